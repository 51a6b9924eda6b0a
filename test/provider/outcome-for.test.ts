/**
 * What a normalized provider event says about an open attempt of each operation (the pure part of
 * applying provider events, SPEC §11): the same facts a live answer or a sync would give.
 */
import { describe, expect, it } from 'vitest';
import { outcomeFor } from '../../src/inbound/apply.js';
import type { NormalizedProviderEvent } from '../../src/connectors/port.js';

type T = NormalizedProviderEvent['type'];
const TYPES: T[] = ['authorized', 'captured', 'failed', 'voided', 'refunded', 'refund_failed', 'other'];

function ev(type: T, extra: Partial<NormalizedProviderEvent> = {}): NormalizedProviderEvent {
  return { providerEventId: 'evt_1', providerReference: 'ch_1', attemptId: 'att_1', paymentId: 'pay_1', type, occurredAt: '2026-01-01T00:00:00.000Z', ...extra };
}

const succeeded = (providerStatus: string) => ({ outcome: 'succeeded', providerReference: 'ch_1', providerStatus });
const declined = (operation: string, code = 'provider_failed') => ({ outcome: 'declined', code, message: `The provider reported ${operation} failed.`, providerReference: 'ch_1' });

describe('outcomeFor', () => {
  it('authorize: authorized and captured succeed, failed declines, the rest say nothing', () => {
    const got = Object.fromEntries(TYPES.map((t) => [t, outcomeFor('authorize', ev(t))]));
    expect(got).toEqual({
      authorized: succeeded('authorized'),
      captured: succeeded('captured'),
      failed: declined('authorize'),
      voided: null,
      refunded: null,
      refund_failed: null,
      other: null,
    });
  });

  it('capture: captured succeeds, failed declines (with the provider’s code when given)', () => {
    const got = Object.fromEntries(TYPES.map((t) => [t, outcomeFor('capture', ev(t, { failureCode: 'expired_authorization' }))]));
    expect(got).toEqual({
      authorized: null,
      captured: succeeded('captured'),
      failed: declined('capture', 'expired_authorization'),
      voided: null,
      refunded: null,
      refund_failed: null,
      other: null,
    });
  });

  it('void: only voided speaks about it', () => {
    const got = Object.fromEntries(TYPES.map((t) => [t, outcomeFor('void', ev(t))]));
    expect(got).toEqual({ authorized: null, captured: null, failed: null, voided: succeeded('voided'), refunded: null, refund_failed: null, other: null });
  });

  it('refund: refunded succeeds, refund_failed declines', () => {
    const got = Object.fromEntries(TYPES.map((t) => [t, outcomeFor('refund', ev(t))]));
    expect(got).toEqual({
      authorized: null,
      captured: null,
      failed: null,
      voided: null,
      refunded: succeeded('refunded'),
      refund_failed: declined('refund'),
      other: null,
    });
  });

  it('an event without a provider reference gives an empty one', () => {
    expect(outcomeFor('authorize', ev('captured', { providerReference: null }))).toEqual({ outcome: 'succeeded', providerReference: '', providerStatus: 'captured' });
    expect(outcomeFor('refund', ev('refund_failed', { providerReference: null }))).toMatchObject({ outcome: 'declined', providerReference: '' });
  });
});
