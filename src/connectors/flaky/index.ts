import type { MockConnectorOptions } from '../mock/index.js';
import { MockProviderConnector } from '../mock/index.js';

export type FlakyConnectorOptions = Omit<MockConnectorOptions, 'name' | 'pathPrefix'>;

/** The mock provider's flaky mode: seeded failures, timeouts, latency and unruly webhooks. */
export function createFlakyConnector(opts: FlakyConnectorOptions): MockProviderConnector {
  return new MockProviderConnector({ ...opts, name: 'flaky', pathPrefix: '/flaky' });
}
