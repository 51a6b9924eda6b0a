/**
 * Socket errors that mean the connection was never established, so the provider cannot have seen
 * the request: the only network failures that count as a certain non-charge (failover allowed).
 * On a reused keep-alive socket a failure is a reset or a timeout, never one of these.
 */
export const NEVER_SENT_CODES: readonly string[] = ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL'];
