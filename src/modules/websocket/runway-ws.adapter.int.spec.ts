import { request as httpRequest, type IncomingMessage } from 'node:http';
import { type ArgumentsHost, Catch, Module, UseFilters, type WsExceptionFilter } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { type OnGatewayConnection, type OnGatewayDisconnect, type OnGatewayInit, SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { WebSocket, type WebSocketServer } from 'ws';
import { ForbiddenError, RateLimitedError } from '../../common/errors';
import { routeSockets, RunwayWsAdapter, unrouteSockets } from './runway-ws.adapter';

/** What the test gateway saw, in order. */
const seen: string[] = [];

@Catch()
class EchoErrorFilter implements WsExceptionFilter {
  catch(error: Error, host: ArgumentsHost): void {
    host.switchToWs().getClient<WebSocket>().send(JSON.stringify({ type: 'error', message: error.message }));
  }
}

@UseFilters(EchoErrorFilter)
@WebSocketGateway({ path: '/test', maxPayload: 64 })
class TestGateway implements OnGatewayInit<WebSocketServer>, OnGatewayConnection, OnGatewayDisconnect {
  server: WebSocketServer;

  afterInit(server: WebSocketServer): void {
    this.server = server;
    routeSockets<string>(server, {
      admit: async (request) => {
        const who = request.headers['x-who'];
        if (who === 'slow') throw new RateLimitedError('too many', 7);
        if (who === 'broken') throw new Error('a bug');
        if (typeof who !== 'string') throw new ForbiddenError('say who you are');
        return who;
      },
      read: (socket, data) => {
        const message = JSON.parse(String(data)) as { type: string; ms?: number };
        if (message.type === 'refused') {
          socket.send(JSON.stringify({ type: 'refused' }));
          return null;
        }
        return { event: message.type, data: message };
      },
    });
  }

  handleConnection(socket: WebSocket, _request: IncomingMessage, who: string): void {
    // A gateway listens for its sockets' errors (an oversized frame is one): ws throws those nobody hears.
    socket.on('error', () => undefined);
    seen.push(`connected ${who}`);
  }

  handleDisconnect(): void {
    seen.push('disconnected');
  }

  @SubscribeMessage('wait')
  async wait(_socket: WebSocket, message: { ms: number }): Promise<{ type: string; ms: number }> {
    seen.push(`wait ${message.ms}`);
    await new Promise((resolve) => setTimeout(resolve, message.ms));
    seen.push(`waited ${message.ms}`);
    return { type: 'waited', ms: message.ms };
  }

  @SubscribeMessage('throw')
  throws(): void {
    throw new Error('thrown by the handler');
  }
}

@Module({ providers: [TestGateway] })
class TestModule {}

describe('RunwayWsAdapter', () => {
  let app: NestExpressApplication;
  let url: string;

  beforeAll(async () => {
    app = await NestFactory.create<NestExpressApplication>(TestModule, { logger: false });
    app.useWebSocketAdapter(new RunwayWsAdapter(app, { maxPayload: 1024 }));
    await app.listen(0, '127.0.0.1');
    url = (await app.getUrl()).replace('http://', 'ws://').replace('[::1]', '127.0.0.1');
  });

  afterAll(() => app.close());
  beforeEach(() => (seen.length = 0));

  /** The raw HTTP answer to an upgrade request. */
  function refusal(path: string, who?: string): Promise<{ status: number; headers: IncomingMessage['headers']; body: string }> {
    return new Promise((resolve, reject) => {
      const request = httpRequest(`${url.replace('ws://', 'http://')}${path}`, {
        headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', ...(who ? { 'x-who': who } : {}) },
      });
      request.on('response', (response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString()));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body }));
      });
      request.on('upgrade', () => reject(new Error('upgraded')));
      request.on('error', reject);
      request.end();
    });
  }

  function open(who: string): Promise<{ socket: WebSocket; frames: unknown[] }> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(`${url}/test`, { headers: { 'x-who': who } });
      const frames: unknown[] = [];
      socket.on('message', (data) => frames.push(JSON.parse(String(data))));
      socket.once('open', () => resolve({ socket, frames }));
      socket.once('error', reject);
    });
  }

  async function until(condition: () => boolean): Promise<void> {
    while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
  }

  it('refuses upgrades with problem+json: a malformed URL 400, an unknown path 404, the route’s errors with their status and Retry-After, a bug 500', async () => {
    const cases = [
      ['/test?x=%00', 'a', 400, 'validation_failed'],
      ['/nowhere', 'a', 404, 'not_found'],
      ['/test', undefined, 403, 'forbidden'],
      ['/test', 'slow', 429, 'rate_limited'],
      ['/test', 'broken', 500, 'internal_error'],
    ] as const;
    for (const [path, who, status, code] of cases) {
      const answer = await refusal(path, who);
      expect({ path, who, status: answer.status, type: answer.headers['content-type'], code: JSON.parse(answer.body).code }).toEqual({
        path,
        who,
        status,
        type: 'application/problem+json; charset=utf-8',
        code,
      });
    }
    expect((await refusal('/test', 'slow')).headers['retry-after']).toBe('7');
    expect(seen).toEqual([]);
  });

  it('hands what the route admitted to handleConnection, calls the handlers by type one after the other, and the disconnect after them', async () => {
    const { socket, frames } = await open('runner-1');
    socket.send(JSON.stringify({ type: 'wait', ms: 30 }));
    socket.send(JSON.stringify({ type: 'refused' }));
    socket.send(JSON.stringify({ type: 'wait', ms: 0 }));
    socket.send(JSON.stringify({ type: 'nobody' }));
    socket.send(JSON.stringify({ type: 'throw' }));
    await until(() => frames.length === 4);
    // The route answers at once; each handler's result is sent as it returns.
    expect(frames).toEqual([
      { type: 'refused' },
      { type: 'waited', ms: 30 },
      { type: 'waited', ms: 0 },
      { type: 'error', message: 'thrown by the handler' },
    ]);
    socket.send(JSON.stringify({ type: 'wait', ms: 20 }));
    socket.close();
    await until(() => seen.includes('disconnected'));
    expect(seen).toEqual(['connected runner-1', 'wait 30', 'waited 30', 'wait 0', 'waited 0', 'wait 20', 'waited 20', 'disconnected']);
  });

  it('closes a socket whose frame is over the gateway’s maxPayload with 1009', async () => {
    const { socket } = await open('runner-2');
    const closed = new Promise<number>((resolve) => socket.once('close', resolve));
    socket.send(JSON.stringify({ type: 'wait', ms: 0, pad: 'x'.repeat(64) }));
    expect(await closed).toBe(1009);
  });

  it('answers 404 once the gateway has withdrawn its route', async () => {
    const gateway = app.get(TestGateway);
    unrouteSockets(gateway.server);
    expect((await refusal('/test', 'a')).status).toBe(404);
  });
});
