import { monotonicFactory } from 'ulid';

// The provider mints its own ids, shaped unlike Switchyard's, so a mix-up shows at a glance.
const next = monotonicFactory();

export const newChargeId = (): string => `ch_${next().toLowerCase()}`;
export const newRefundId = (): string => `rf_${next().toLowerCase()}`;
export const newEventId = (): string => `evt_mock_${next().toLowerCase()}`;
