import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectUrl } from './connection';
import { AgentOptionsError, DEFAULTS, resolveAgentOptions } from './options';

const TOKEN = `runway_runner_${'ab'.repeat(32)}`;

describe('connectUrl', () => {
  it.each([
    ['http://127.0.0.1:8080', 'ws://127.0.0.1:8080/v1/runner/connect'],
    ['https://runway.example.com/', 'wss://runway.example.com/v1/runner/connect'],
    ['https://example.com/runway', 'wss://example.com/runway/v1/runner/connect'],
    ['ws://h:1/v1/runner/connect', 'ws://h:1/v1/runner/connect'],
    ['http://h?x=1#y', 'ws://h/v1/runner/connect'],
  ])('%s -> %s', (base, url) => {
    expect(connectUrl(base)).toBe(url);
  });

  it('refuses what is not an http(s)/ws(s) URL, and credentials in it', () => {
    expect(() => connectUrl('ftp://h')).toThrow(/expected an http/);
    expect(() => connectUrl('not a url')).toThrow(/not a URL/);
    expect(() => connectUrl('https://user:pw@h')).toThrow(/credentials/);
  });
});

describe('resolveAgentOptions', () => {
  const env = { RUNWAY_URL: 'http://a:1,http://b:2', RUNWAY_RUNNER_TOKEN: TOKEN, PATH: '/usr/bin:/bin', HOME: '/home/r', LANG: 'C.UTF-8', SECRET: 's', DOCKER_HOST: 'unix:///run/docker.sock' };

  it('reads the environment, with defaults', () => {
    const options = resolveAgentOptions({}, env);
    expect(options).toMatchObject({
      urls: ['ws://a:1/v1/runner/connect', 'ws://b:2/v1/runner/connect'],
      token: TOKEN,
      maxOutputBytes: DEFAULTS.maxOutputBytes,
      maxFileBytes: 25 * 1024 * 1024,
      maxFiles: 255,
      killGraceMs: 10_000,
      drainTimeoutMs: null,
      executor: null,
      containerNetwork: 'none',
      keepWorkDirs: false,
      workDir: join(tmpdir(), 'runway-runner'),
    });
  });

  it('gives a job PATH, HOME and LANG only: never the token or other secrets', () => {
    const options = resolveAgentOptions({}, env);
    expect(options.jobEnv).toEqual({ PATH: '/usr/bin:/bin', HOME: '/home/r', LANG: 'C.UTF-8' });
    expect(options.engineEnv).toEqual({ DOCKER_HOST: 'unix:///run/docker.sock' });
  });

  it('lets flags win over the environment', () => {
    const options = resolveAgentOptions({ url: 'https://c', token: 'runway_runner_other', maxFiles: '3', executor: 'podman', drainTimeoutMs: '0' }, env);
    expect(options).toMatchObject({ urls: ['wss://c/v1/runner/connect'], token: 'runway_runner_other', maxFiles: 3, executor: 'podman', drainTimeoutMs: 0 });
  });

  it('reads the token from --token-file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'runway-token-'));
    try {
      await writeFile(join(dir, 'token'), `${TOKEN}\n`);
      expect(resolveAgentOptions({ tokenFile: join(dir, 'token') }, { RUNWAY_URL: 'http://a' }).token).toBe(TOKEN);
      expect(() => resolveAgentOptions({ tokenFile: join(dir, 'nope') }, { RUNWAY_URL: 'http://a' })).toThrow(/cannot read/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it.each([
    ['no URL', {}, {}, /server URL is needed/],
    ['no token', {}, { RUNWAY_URL: 'http://a' }, /runner token is needed/],
    ['a token with a space', { token: 'a b' }, { RUNWAY_URL: 'http://a' }, /printable ASCII/],
    ['an ftp URL', { url: 'ftp://x' }, { RUNWAY_RUNNER_TOKEN: TOKEN }, /--url/],
    ['more than 255 files', { maxFiles: '300' }, env, /--max-files: expected 0..255/],
    ['a negative grace', { killGraceMs: '-1' }, env, /--kill-grace-ms: expected a whole number/],
    ['an unknown executor', { executor: 'lxc' }, env, /--executor/],
    ['max below min', { reconnectMinMs: '1000', reconnectMaxMs: '10' }, env, /--reconnect-max-ms/],
    ['a network name with a space', { containerNetwork: 'a b' }, env, /--container-network/],
  ])('refuses %s', (_what, flags, environment, message) => {
    expect(() => resolveAgentOptions(flags, environment)).toThrow(AgentOptionsError);
    expect(() => resolveAgentOptions(flags, environment)).toThrow(message);
  });
});
