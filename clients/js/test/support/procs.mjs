// Starts the real C programs (tether serve, tether chaos) for the integration tests:
// loopback only, ports from the OS (port 0 + --port-file), each stopped by its PID.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const tetherBin = process.env.TETHER_BIN ? resolve(process.env.TETHER_BIN) : resolve(here, '../../../../build/tether');

export function tempDir() {
  const d = mkdtempSync(join(tmpdir(), 'tether-js-'));
  return { path: d, remove: () => rmSync(d, { recursive: true, force: true }) };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitPort(file, child, what) {
  for (let i = 0; i < 200; i++) {
    if (existsSync(file)) {
      const s = readFileSync(file, 'utf8');
      if (s.endsWith('\n')) {
        return Number(s.trim());
      }
    }
    if (child.exitCode !== null) {
      throw new Error(`${what} exited with ${child.exitCode}`);
    }
    await sleep(25);
  }
  throw new Error(`${what} did not write its port`);
}

function collect(child) {
  const out = { lines: [], stderr: '' };
  let buf = '';
  child.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      out.lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  child.stderr.on('data', (d) => {
    out.stderr += d;
  });
  return out;
}

async function stop(child, signal = 'SIGTERM') {
  if (child.exitCode !== null || child.signalCode !== null) {
    return;
  }
  const done = new Promise((r) => child.once('exit', r));
  process.kill(child.pid, signal);
  const t = setTimeout(() => child.exitCode === null && process.kill(child.pid, 'SIGKILL'), 5000);
  await done;
  clearTimeout(t);
}

/** `tether serve` on 127.0.0.1 (port 0 unless given), its JSON lines in `out.lines`. */
export async function startServe(dir, args = [], port = 0) {
  const pf = join(dir, `serve-${Date.now()}-${Math.random()}.port`);
  const child = spawn(tetherBin, ['serve', '--listen', `127.0.0.1:${port}`, '--port-file', pf, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = collect(child);
  const p = await waitPort(pf, child, 'tether serve');
  return {
    port: p,
    url: `ws://127.0.0.1:${p}/`,
    out,
    pid: child.pid,
    stop: (sig) => stop(child, sig),
    /** The messages printed, parsed. */
    messages: () => out.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)),
  };
}

/** `tether chaos` in front of upstreamPort; `cmd(line)` types a command. */
export async function startChaos(dir, upstreamPort, args = []) {
  const pf = join(dir, `chaos-${Date.now()}.port`);
  const child = spawn(tetherBin, ['chaos', '--upstream', `127.0.0.1:${upstreamPort}`, '--listen', '127.0.0.1:0', '--port-file', pf, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const out = collect(child);
  const p = await waitPort(pf, child, 'tether chaos');
  return {
    port: p,
    url: `ws://127.0.0.1:${p}/`,
    out,
    pid: child.pid,
    cmd: (line) => child.stdin.write(`${line}\n`),
    stop: () => stop(child),
  };
}

/** Resolves when pred() holds, polling; rejects after ms. */
export async function until(pred, ms, what) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await sleep(10);
  }
}

/**
 * The serve lines get() returns once they name n distinct seqs (or after ms):
 * the server prints a line before it acknowledges or echoes the message, but
 * its stdout pipe may reach this process after the client's socket does.
 */
export async function serverLines(get, n, ms = 5000) {
  const end = Date.now() + ms;
  while (new Set(get().map((m) => m.seq)).size < n && Date.now() < end) {
    await sleep(10);
  }
  return get();
}

/** Checks that one session's serve lines hold seqs 1..n exactly once (repeats only flagged redelivered). */
export function checkServerReceived(msgs, n, payload) {
  const seen = new Map();
  for (const m of msgs) {
    if (seen.has(m.seq)) {
      if (!m.redelivered) {
        throw new Error(`server: seq ${m.seq} delivered twice without the redelivered flag`);
      }
      continue;
    }
    if (m.text !== payload(m.seq)) {
      throw new Error(`server: seq ${m.seq} holds ${m.text}`);
    }
    seen.set(m.seq, m);
  }
  for (let s = 1; s <= n; s++) {
    if (!seen.has(s)) {
      throw new Error(`server: seq ${s} missing (${seen.size} of ${n})`);
    }
  }
  if (seen.size !== n) {
    throw new Error(`server: ${seen.size} distinct seqs, expected ${n}`);
  }
}

/** A free loopback port from the OS (bound, then released). */
export async function freePort() {
  const { createServer } = await import('node:net');
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => res(p));
    });
  });
}

/**
 * squid on a free loopback port with Debian 12's stock access rules (CONNECT only to 443,
 * as tests/field/ext.c does), so ws:// through it is refused and plain HTTP passes.
 */
export async function startSquid(dir) {
  const { writeFileSync, mkdirSync, chmodSync } = await import('node:fs');
  const sd = join(dir, 'squid');
  mkdirSync(sd, { recursive: true });
  chmodSync(dir, 0o711);
  chmodSync(sd, 0o777); /* squid drops root for the "proxy" user */
  const port = await freePort();
  const conf = join(sd, 'squid.conf');
  writeFileSync(
    conf,
    [
      'acl SSL_ports port 443',
      'acl Safe_ports port 80',
      'acl Safe_ports port 443',
      'acl Safe_ports port 1025-65535',
      'http_access deny !Safe_ports',
      'http_access deny CONNECT !SSL_ports',
      'http_access allow localhost',
      'http_access deny all',
      `http_port 127.0.0.1:${port}`,
      `pid_filename ${sd}/squid.pid`,
      `access_log stdio:${sd}/access.log`,
      `cache_log ${sd}/cache.log`,
      'cache_store_log none',
      `coredump_dir ${sd}`,
      'visible_hostname tether-test',
      'dns_nameservers 127.0.0.1',
      'shutdown_lifetime 0 seconds',
      'netdb_filename none',
      'logfile_rotate 0',
      '',
    ].join('\n'),
  );
  const child = spawn('/usr/sbin/squid', ['-N', '-f', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  collect(child);
  const { connect } = await import('node:net');
  for (let i = 0; i < 400; i++) {
    const ok = await new Promise((r) => {
      const c = connect(port, '127.0.0.1', () => {
        c.destroy();
        r(true);
      });
      c.on('error', () => r(false));
    });
    if (ok) {
      return { port, pid: child.pid, stop: () => stop(child), log: () => readFileSync(join(sd, 'access.log'), 'utf8') };
    }
    if (child.exitCode !== null) {
      break;
    }
    await sleep(50);
  }
  await stop(child);
  throw new Error(`squid did not start on port ${port}`);
}
