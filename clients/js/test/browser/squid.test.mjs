// Headless Chromium behind a real squid with Debian's stock rules: CONNECT (which a ws://
// URL needs through a proxy) is refused, plain HTTP passes. The page's WebSocket fails with
// no status visible; the HTTP open tells the path is the problem, the session moves to the
// HTTP carriage, and the server holds every message once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServe, startSquid, tempDir, checkServerReceived, serverLines } from '../support/procs.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const missing = !existsSync(chromiumPath) ? `no ${chromiumPath}` : !existsSync('/usr/sbin/squid') ? 'no /usr/sbin/squid' : false;

test('through squid with WebSocket blocked: the page falls back to HTTP and delivers', { timeout: 60000, skip: missing }, async () => {
  const dir = tempDir();
  const srv = await startServe(dir.path);
  const squid = await startSquid(dir.path);
  const web = createServer((req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    const f = p === '/page.html' ? join(here, 'page.html') : p === '/tether.min.js' ? join(here, '..', '..', 'dist', 'tether.min.js') : null;
    if (!f) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': f.endsWith('.html') ? 'text/html' : 'text/javascript', 'cache-control': 'no-store' }).end(readFileSync(f));
  });
  await new Promise((r) => web.listen(0, '127.0.0.1', r));
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ['--no-sandbox', `--proxy-server=http://127.0.0.1:${squid.port}`, '--proxy-bypass-list=<-loopback>'],
  });
  try {
    const page = await browser.newPage();
    const N = 200;
    await page.goto(`http://127.0.0.1:${web.address().port}/page.html?n=${N}&name=squid&ws=${encodeURIComponent(srv.url)}`);
    let s;
    const end = Date.now() + 30000;
    do {
      await new Promise((r) => setTimeout(r, 50));
      s = await page.evaluate(() => window.tetherTest);
    } while (!s.done && !s.error && Date.now() < end);
    assert.equal(s.error, null);
    assert.ok(s.done, `not finished: ${s.states.join('; ')}`);
    assert.ok(s.states.some((x) => x.startsWith('disconnected websocket TETHER_ECONNECT')), s.states.join('; '));
    assert.ok(s.states.some((x) => x.startsWith('connected http')), s.states.join('; '));
    assert.match(squid.log(), /CONNECT 127\.0\.0\.1:\d+/, 'the WebSocket went to squid as CONNECT');
    assert.match(squid.log(), /\.tether\/v1\/open/, 'the carriage went through squid');
    checkServerReceived(await serverLines(() => srv.messages().filter((m) => m.session === s.sessionId), N), N, (i) => `m-${i}`);
  } finally {
    await browser.close();
    web.close();
    await squid.stop();
    await srv.stop();
    dir.remove();
  }
});
