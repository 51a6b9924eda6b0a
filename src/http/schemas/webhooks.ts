import { z } from 'zod';
import { isValidFilter } from '../../domain/event-filter.js';
import { listLimit } from './common.js';

export const createEndpointBody = z
  .object({
    url: z.string().min(1).max(2048).describe('https in live mode; http://localhost allowed in test mode'),
    enabled_events: z
      .array(z.string().max(100).refine(isValidFilter, 'an event type, a prefix wildcard like payment.*, or *'))
      .min(1)
      .max(50)
      .default(['*'])
      .describe('Event types to receive; `payment.*` and `*` are wildcards.'),
    description: z.string().max(500).optional(),
  })
  .strict();

export const rotateSecretBody = z
  .object({
    overlap_seconds: z.number().int().min(0).max(7 * 86_400).default(86_400).describe('How long the previous secret keeps signing too.'),
  })
  .strict();

export const recoverBody = z.object({ since: z.iso.datetime({ offset: true }) }).strict();

export const listDeliveriesQuery = z
  .object({
    status: z.enum(['pending', 'succeeded', 'dead', 'dropped']).optional(),
    endpoint_id: z.string().min(1).max(64).optional(),
    event_id: z.string().min(1).max(64).optional(),
    limit: listLimit,
    starting_after: z.string().min(1).max(64).optional(),
  })
  .strict();

export const listEventsQuery = z
  .object({
    type: z.string().min(1).max(100).optional(),
    payment_id: z.string().min(1).max(64).optional(),
    limit: listLimit,
    starting_after: z.string().min(1).max(64).optional(),
  })
  .strict();
