import { type TestApp, startTestApp } from './app';
import { Fixtures } from './fixtures';
import { TestRunner } from './runner-client';

export interface AppSuite {
  /** The file's app and fixtures: set once its `beforeAll` ran. */
  t: TestApp;
  f: Fixtures;
  /** Runner sockets a test opened: closed after each test. */
  readonly open: TestRunner[];
  /** A runner's socket, said hello, closed after the test. */
  connect(token: string): Promise<TestRunner>;
}

/**
 * The life of an integration test file on one app: started with `env` before its tests, the
 * runner sockets a test opened closed after it, the app and its database gone at the end.
 * Call it at the top of a `describe`; its hooks run before the file's own.
 */
export function appSuite(env: Record<string, string> = {}): AppSuite {
  const suite: AppSuite = {
    t: undefined as unknown as TestApp,
    f: undefined as unknown as Fixtures,
    open: [],
    async connect(token) {
      const runner = await TestRunner.hello(suite.t.url, token);
      suite.open.push(runner);
      return runner;
    },
  };
  beforeAll(async () => {
    suite.t = await startTestApp(env);
    suite.f = new Fixtures(suite.t);
  });
  afterEach(async () => {
    await Promise.all(suite.open.splice(0).map((runner) => runner.close()));
  });
  afterAll(async () => {
    await suite.t?.close();
  });
  return suite;
}
