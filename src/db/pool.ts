import pg from 'pg';
import { inSpan, SpanKind } from '../observability/tracing.js';
import { AdmissionGate } from './admission.js';
import { Waits, type WaitEntry } from './waits.js';
import { OUTBOX_CHANNEL, Throttle } from './outbox-signal.js';

// BIGINT columns (money) come back as JS numbers: every amount is capped at 10^12,
// far below Number.MAX_SAFE_INTEGER, so nothing is lost.
pg.types.setTypeParser(20, (v) => Number(v));

export type Db = pg.Pool;
export type Tx = pg.PoolClient;
export type Queryable = pg.Pool | pg.PoolClient;

/**
 * Names for statement texts, so each connection parses and plans a hot statement once and runs
 * its prepared form afterwards (a round trip's worth of server CPU saved per statement). Bounded:
 * past the cap, new texts run unnamed.
 */
const MAX_NAMED = 2000;
const statementNames = new Map<string, string>();

function statementName(text: string): string | undefined {
  let name = statementNames.get(text);
  if (name === undefined && statementNames.size < MAX_NAMED) {
    name = `sy_${statementNames.size.toString(36)}`;
    statementNames.set(text, name);
  }
  return name;
}

/** A prepared statement whose result columns changed under it (a migration while running). */
export function isStalePlan(err: unknown): boolean {
  return (err as { code?: string } | null)?.code === '0A000';
}

type RawQuery = (config: unknown, values?: unknown, callback?: unknown) => unknown;

function prepareStatements(client: pg.PoolClient): void {
  const raw = client.query.bind(client) as RawQuery;
  client.query = ((text: unknown, values?: unknown, callback?: unknown) => {
    if (typeof text === 'string' && Array.isArray(values)) {
      const name = statementName(text);
      if (name) return typeof callback === 'function' ? raw({ name, text, values }, callback) : raw({ name, text, values });
    }
    return raw(text, values, callback);
  }) as typeof client.query;
}

/** Per pool: the throttled NOTIFY that wakes the outbox relay (src/db/outbox-signal.ts). */
const outboxSignals = new WeakMap<Db, Throttle>();
/** Transactions that wrote outbox events: their commit is followed by a signal. */
const wroteEvents = new WeakSet<Tx>();

/** Called by whoever inserts events, in the transaction that inserts them. */
export function markEventsWritten(tx: Tx): void {
  wroteEvents.add(tx);
}

/** Wakes the relay now (throttled); for events written outside withTx. */
export function signalOutbox(db: Db): void {
  outboxSignals.get(db)?.signal();
}

const poolWaits = new WeakMap<Db, Waits>();

/**
 * The database queue of this pool, in ms: the longer of how long the oldest caller still waiting
 * for a connection has waited, and the longest wait completed in the last second (0 when neither).
 * A standing queue here means the process accepts work faster than it and its database complete
 * it: the API sheds new requests on it (OVERLOAD_DB_WAIT_MS). The completed waits keep the signal
 * up while an overloaded queue drains for a moment, instead of letting a flood in each time.
 */
export function connectionWaitMs(db: Db): number {
  return poolWaits.get(db)?.longestMs() ?? 0;
}

const gates = new WeakMap<Db, AdmissionGate>();

/**
 * Waits, at most maxWaitMs, until no caller of this pool is waiting for a connection (see
 * src/db/admission.ts); true when the request may start. Synchronous true when nobody waits.
 */
export function admitRequest(db: Db, maxWaitMs: number): true | Promise<boolean> {
  return gates.get(db)?.admit(maxWaitMs) ?? true;
}

/** New requests now waiting to start behind this pool's queue, and whether that queue stands. */
export function admissionQueue(db: Db): { length: number; standing: boolean } {
  const gate = gates.get(db);
  return { length: gate?.size ?? 0, standing: gate?.standing ?? false };
}

function gateRequests(pool: pg.Pool): AdmissionGate {
  const gate = new AdmissionGate({
    waiting: () => pool.waitingCount,
    free: () => pool.idleCount + Math.max(0, (pool.options.max ?? 10) - pool.totalCount),
  });
  gates.set(pool, gate);
  pool.on('release', () => pumpSoon(gate));
  pool.on('remove', () => pumpSoon(gate));
  return gate;
}

/**
 * Lets waiting requests in once pg-pool has finished what it is doing: it emits 'release' before it
 * puts the client back or hands it on. Every release passes here, so nothing is scheduled while
 * nobody waits to start (the usual case).
 */
function pumpSoon(gate: AdmissionGate): void {
  if (gate.size > 0) queueMicrotask(() => gate.pump());
}

type ConnectCallback = (err: Error | undefined, client: pg.PoolClient | undefined, release: (release?: unknown) => void) => void;

/** Wraps pool.connect (which pool.query uses too) to know who is waiting, since when, and for how long. */
function trackConnectionWaits(pool: pg.Pool, gate: AdmissionGate): void {
  const waits = new Waits();
  poolWaits.set(pool, waits);
  const done = (entry: WaitEntry) => {
    waits.end(entry);
    // A waiter served: the pool's queue may just have cleared.
    pumpSoon(gate);
  };
  const connect = pool.connect.bind(pool) as (cb?: ConnectCallback) => Promise<pg.PoolClient> | undefined;
  pool.connect = ((cb?: ConnectCallback) => {
    const entry = waits.start();
    if (cb) {
      return connect((err, client, release) => {
        done(entry);
        cb(err, client, release);
      });
    }
    return connect()!.finally(() => done(entry));
  }) as typeof pool.connect;
}

export interface PoolOptions {
  /** Run parameterised statements prepared, per connection (default true). */
  prepared?: boolean;
  /** At most one relay wake-up NOTIFY per this many ms from this pool (default 10; 0: one per commit). */
  outboxNotifyMs?: number;
}

export function createPool(connectionString: string, max = 10, opts: PoolOptions = {}): Db {
  const pool = new pg.Pool({ connectionString, max });
  trackConnectionWaits(pool, gateRequests(pool));
  outboxSignals.set(pool, new Throttle(() => pool.query(`SELECT pg_notify('${OUTBOX_CHANNEL}', '')`), opts.outboxNotifyMs ?? 10));
  // pool.query runs on these clients too; pg-pool discards a client whose query failed, so a stale
  // prepared statement there heals itself on the next connection.
  if (opts.prepared !== false) pool.on('connect', prepareStatements);
  const query = pool.query.bind(pool) as (text: string, values?: unknown[]) => Promise<pg.QueryResult>;
  // One span per statement run outside a transaction; the statement text, never its values.
  pool.query = ((text: string, values?: unknown[]) =>
    inSpan('db.query', { 'db.system': 'postgresql', 'db.statement': String(text).slice(0, 200) }, () => query(text, values), SpanKind.CLIENT)) as typeof pool.query;
  // An idle client losing its connection (database restart) must not crash the process.
  pool.on('error', () => undefined);
  return pool;
}

/** Runs fn in one transaction; rolls back on any throw. Never call the network inside fn. */
export async function withTx<T>(db: Db, fn: (tx: Tx) => Promise<T>): Promise<T> {
  return inSpan('db.transaction', { 'db.system': 'postgresql' }, () => runTx(db, fn), SpanKind.CLIENT);
}

async function runTx<T>(db: Db, fn: (tx: Tx) => Promise<T>): Promise<T> {
  const client = await db.connect();
  // A connection that dies mid-transaction must fail this transaction, not crash the process.
  const onError = () => undefined;
  client.on('error', onError);
  let broken = false;
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    if (wroteEvents.delete(client)) signalOutbox(db);
    return result;
  } catch (err) {
    wroteEvents.delete(client);
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    // Its prepared statements were planned for an older schema: start that connection afresh.
    if (isStalePlan(err)) broken = true;
    throw err;
  } finally {
    client.off('error', onError);
    // A client that could not even roll back is discarded, never handed to the next caller.
    client.release(broken);
  }
}
