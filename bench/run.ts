/**
 * `npm run bench` (tsx bench/run.ts): a thin supervisor that runs the benchmark (bench/main.ts) in a
 * child process and passes signals on. Why: the tsx CLI SIGKILLs its child when that child is too
 * busy to acknowledge a Ctrl-C within ~30 ms — a load generator often is — and a SIGKILLed bench
 * could not stop Switchyard, the baseline and PostgreSQL or remove its temp dirs. Here tsx can
 * only kill this idle supervisor; the benchmark notices its parent is gone and cleans up.
 *
 * Usage: npm run bench -- [--quick] [--only=…] [--skip=…] [--<setting>=…]; --help for the list.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('./main.ts', import.meta.url));
const child = spawn(process.execPath, ['--import', 'tsx', main, ...process.argv.slice(2)], { stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    child.kill(signal);
  });
}
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 + 2 : 1)));
