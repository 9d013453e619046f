import { Liveness } from '../../src/modules/liveness/liveness';
import { Bus } from '../../src/modules/messaging/bus';
import { Subjects } from '../../src/modules/messaging/subjects';
import { RunnerGateway } from '../../src/modules/gateway/runner-gateway';
import { appSuite } from '../support/suite';

/**
 * How the gateway recovers from what it cannot hear: a lost dispatch message (its sweep), a
 * runner that vanished without closing (its ping), and being given up for lost by liveness (4001).
 */
describe('gateway recovery', () => {
  const s = appSuite();

  afterEach(() => jest.restoreAllMocks());

  async function runnerEvents(runnerId: string): Promise<{ type: string; data: Record<string, unknown> }[]> {
    const { rows } = await s.t.db.query<{ type: string; data: Record<string, unknown> }>(
      `SELECT type, data FROM events WHERE stream_id = $1 ORDER BY stream_position`,
      [runnerId],
    );
    return rows;
  }

  async function waitForRunnerEvent(runnerId: string, type: string): Promise<Record<string, unknown>> {
    for (let i = 0; i < 200; i++) {
      const found = (await runnerEvents(runnerId)).find((event) => event.type === type);
      if (found !== undefined) return found.data;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    throw new Error(`no ${type} for runner ${runnerId}: ${JSON.stringify(await runnerEvents(runnerId))}`);
  }

  it('a waiting runner whose dispatch message was lost gets the job from the 5 s sweep', async () => {
    const { t, f } = s;
    const spec = await f.spec();
    const tenant = await f.tenant();
    const runner = await f.runner([spec.slug]);
    const socket = await s.connect(runner.token);
    // It asks, finds nothing, and waits (a later frame's answer shows the ready was handled).
    socket.send({ type: 'ready' });
    expect(await socket.request({ type: 'heartbeat', job: '00000000-0000-7000-8000-000000000000', attempt: 1 })).toMatchObject({ code: 'not_found' });

    // The submission's dispatch message is lost on the way.
    const bus = t.app.get(Bus);
    const dispatch = t.app.get(Subjects).dispatch(spec.slug);
    const publish = bus.publish.bind(bus);
    const dropped: string[] = [];
    jest.spyOn(bus, 'publish').mockImplementation(async (subject, payload) => {
      if (subject === dispatch) {
        dropped.push(subject);
        return;
      }
      return publish(subject, payload);
    });
    const job = await f.submit(tenant, spec.slug);
    expect(dropped).toEqual([dispatch]);
    // The gateway's sweep (every 5 s) claims for it anyway.
    expect(await socket.next('job', 8_000)).toMatchObject({ job: { id: job.id, attempt: 1 } });
    expect(await f.eventTypes(job.id)).toEqual(['JobSubmitted', 'JobClaimed']);
  });

  it('the ping drops a socket whose peer stopped answering, and records the runner disconnected', async () => {
    const { t, f } = s;
    const spec = await f.spec();
    const runner = await f.runner([spec.slug]);
    const socket = await s.connect(runner.token);
    const gateway = t.app.get(RunnerGateway);
    const connected = gateway.connected;
    // The peer vanishes without closing: it reads nothing more, so no pong comes back.
    const raw = (socket.socket as unknown as { _socket: { pause(): void } })._socket;
    raw.pause();
    const ping = () => (gateway as unknown as { ping(): void }).ping();
    ping(); // a ping goes out, and is not answered
    ping(); // no pong since: terminated
    expect(await waitForRunnerEvent(runner.id, 'RunnerDisconnected')).toMatchObject({ reason: 'closed' });
    expect(gateway.connected).toBe(connected - 1);
    socket.socket.terminate();
  });

  it('the ping leaves a socket that answers alone', async () => {
    const { t, f } = s;
    const spec = await f.spec();
    const runner = await f.runner([spec.slug]);
    const socket = await s.connect(runner.token);
    const gateway = t.app.get(RunnerGateway);
    const ping = () => (gateway as unknown as { ping(): void }).ping();
    const pong = () => new Promise<void>((resolve) => socket.socket.once('ping', () => setImmediate(resolve)));
    for (let i = 0; i < 3; i++) {
      const pinged = pong();
      ping();
      await pinged; // the client answers the ping (ws does on its own)
      // A frame's answer after the pong: the server has read the pong before it.
      expect(await socket.request({ type: 'heartbeat', job: '00000000-0000-7000-8000-000000000000', attempt: 1 })).toMatchObject({ code: 'not_found' });
    }
    ping();
    expect(socket.closed).toBeNull();
    expect((await runnerEvents(runner.id)).map((e) => e.type)).toEqual(['RunnerRegistered', 'RunnerConnected']);
  });

  it('a gateway given up for lost by liveness closes its runners with 4001, and they are recorded as gateway_lost', async () => {
    const { t, f } = s;
    const spec = await f.spec();
    const runner = await f.runner([spec.slug]);
    const socket = await s.connect(runner.token);
    // Unheard for longer than the heartbeat timeout (the clock moves without the gateway's alive beats).
    t.clock.advance(t.config.heartbeatTimeoutMs + 1_000);
    await t.app.get(Liveness).sweep();
    expect(await socket.whenClosed()).toMatchObject({ code: 4001 });
    expect(await waitForRunnerEvent(runner.id, 'RunnerDisconnected')).toMatchObject({ reason: 'gateway_lost' });
    // It reconnects and says hello again: connected once more.
    t.advance(0);
    const again = await s.connect(runner.token);
    expect(again.closed).toBeNull();
    const types = (await runnerEvents(runner.id)).map((e) => e.type);
    expect(types.slice(-1)).toEqual(['RunnerConnected']);
  });
});
