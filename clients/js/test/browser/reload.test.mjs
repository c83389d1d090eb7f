// In headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core): a page using
// the bundle sends while tether chaos cuts, is reloaded mid-stream, and the reloaded page
// finishes the outbox from IndexedDB; the server holds every message exactly once. A second
// tab on the same session is refused (Web Locks).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { startServe, startChaos, tempDir, until, checkServerReceived, serverLines } from '../support/procs.mjs';
import { pageServer } from './pages.mjs';

const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

test('reload mid-stream through chaos cuts: the outbox finishes from IndexedDB, exactly once', { timeout: 60000, skip: !existsSync(chromiumPath) && `no ${chromiumPath}` }, async () => {
  const dir = tempDir();
  const srv = await startServe(dir.path);
  const relay = await startChaos(dir.path, srv.port, ['--seed', '11', '--random', '150:400', '--kinds', 'cut']);
  const web = await pageServer();
  const browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ['--no-sandbox'] });
  try {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    const N = 600;
    const url = `http://127.0.0.1:${web.port}/page.html?n=${N}&name=reload&ws=${encodeURIComponent(relay.url)}`;
    await page.goto(url);
    const state = () => page.evaluate(() => window.tetherTest);
    let s;
    const end = Date.now() + 20000;
    do {
      await new Promise((r) => setTimeout(r, 20));
      s = await state();
      assert.equal(s.error, null, `page error: ${s.error}`);
    } while (s.outLast < N / 3 && Date.now() < end);
    assert.ok(s.outLast >= N / 3 && s.outLast < N, `the reload falls mid-stream (outLast ${s.outLast})`);
    const before = { outLast: s.outLast, peerAcked: s.peerAcked, sessionId: s.sessionId };
    await page.reload();
    /* a second tab on the same session is refused while the reloaded one owns it */
    let after;
    const end2 = Date.now() + 30000;
    do {
      await new Promise((r) => setTimeout(r, 50));
      after = await state();
      assert.equal(after.error, null, `page error after reload: ${after.error}`);
    } while (!after.done && Date.now() < end2);
    assert.ok(after.done, `not finished: ${JSON.stringify(after)}`);
    assert.equal(after.sessionId, before.sessionId, 'the reloaded page resumed the same session');
    assert.ok(after.startedAt >= before.outLast, `the reloaded page found ${after.startedAt} stored (had ${before.outLast})`);
    assert.ok(after.startedAt < N, 'the reloaded page still had messages to send');
    assert.equal(after.peerAcked, N);
    const second = await ctx.newPage();
    await second.goto(url.replace('n=600', 'n=601'));
    let other;
    const end3 = Date.now() + 10000;
    do {
      await new Promise((r) => setTimeout(r, 50));
      other = await second.evaluate(() => window.tetherTest);
    } while (!other.error && Date.now() < end3);
    assert.match(other.error ?? '', /TETHER_ELOCKED/);
    const msgs = await serverLines(() => srv.messages().filter((m) => m.session === before.sessionId), N);
    checkServerReceived(msgs, N, (i) => `m-${i}`);
    assert.equal(srv.messages().length - msgs.length, 0, 'no other session reached the server');
  } finally {
    await browser.close();
    web.close();
    await relay.stop();
    await srv.stop();
    dir.remove();
  }
});
