// In headless Chromium: a page whose WebSocket is blocked (tether chaos stall-upgrade; plain
// HTTP passes) falls back to HTTP and stores the verdict in IndexedDB (a schema-1 database,
// upgraded in place); the reloaded page starts on HTTP at once, with no WebSocket attempt.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { startServe, startChaos, tempDir, checkServerReceived, serverLines } from '../support/procs.mjs';
import { pageServer } from './pages.mjs';

const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

async function finished(page, ms) {
  let s;
  const end = Date.now() + ms;
  do {
    await new Promise((r) => setTimeout(r, 50));
    s = await page.evaluate(() => window.tetherTest);
    assert.equal(s.error, null, `page error: ${s.error}`);
  } while (!s.done && Date.now() < end);
  assert.ok(s.done, `not finished: ${JSON.stringify(s)}`);
  return s;
}

test('a reload after the fallback starts on HTTP at once, from the verdict in IndexedDB', { timeout: 30000, skip: !existsSync(chromiumPath) && `no ${chromiumPath}` }, async () => {
  const dir = tempDir();
  const srv = await startServe(dir.path);
  const relay = await startChaos(dir.path, srv.port, ['--stall-upgrade']);
  const web = await pageServer();
  const browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ['--no-sandbox'] });
  try {
    const page = await (await browser.newContext()).newPage();
    const url = (n, extra = '') => `http://127.0.0.1:${web.port}/page.html?n=${n}&name=verdict&welcome=500&mem=60000&ws=${encodeURIComponent(relay.url)}${extra}`;
    await page.goto(url(20, '&v1=1'));
    const first = await finished(page, 10000);
    assert.match(first.states[0], /^connecting websocket/);
    assert.ok(first.states.some((s) => /^disconnected websocket TETHER_ESTALLED/.test(s)), first.states.join('\n'));
    assert.ok(first.states.some((s) => /^connected http/.test(s)), first.states.join('\n'));
    await page.goto(url(40));
    const again = await finished(page, 10000);
    assert.equal(again.startedAt, 20);
    assert.match(again.states[0], /^connecting http .*earlier run found WebSocket blocked/, again.states.join('\n'));
    assert.ok(!again.states.some((s) => / websocket /.test(s)), `no WebSocket attempt: ${again.states.join('\n')}`);
    checkServerReceived(await serverLines(() => srv.messages(), 40), 40, (i) => `m-${i}`);
  } finally {
    await browser.close();
    web.close();
    await relay.stop();
    await srv.stop();
    dir.remove();
  }
});
