import pino, { type Logger } from 'pino';

/**
 * JSON logs. Request bodies are never logged; these paths are redacted anyway in case an object
 * carrying them is logged by mistake: keys, secrets, tokens and customer contact data.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'headers.authorization',
  'headers["x-api-key"]',
  '*.authorization',
  '*["x-api-key"]',
  '*.api_key',
  '*.key',
  '*.secret',
  '*.password',
  '*.payment_method_token',
  '*.email',
  '*.phone',
  '*.customer',
  'customer',
  'email',
  'phone',
  'payment_method_token',
];

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'switchyard' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}

export type { Logger };
