import { busContract } from '../../../test/support/bus-contract';
import { NatsBus } from './nats-bus';

const NATS_URL = process.env.RUNWAY_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

// Two connections: a publishes as one process, b subscribes as another.
busContract('NatsBus', async () => {
  const a = await NatsBus.connect([NATS_URL], 'runway-test-a');
  const b = await NatsBus.connect([NATS_URL], 'runway-test-b');
  return {
    a,
    b,
    close: async () => {
      await Promise.all([a.close(), b.close()]);
    },
  };
});

describe('NatsBus', () => {
  it('fails to connect when no server answers', async () => {
    await expect(NatsBus.connect(['nats://127.0.0.1:1'], 'runway-test')).rejects.toThrow();
  });
});
