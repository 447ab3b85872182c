// Two monitoring consoles on the same alert: what one operator does (an
// acknowledgement, a note) appears on the other's screen from the live
// stream, without a reload and without the second console asking for it.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as H from './lib/harness.mjs';

const { tid } = H;
const CASE = 'TST-2026-0201';
const OFF = 'OFF-T201';
const VIC = 'VIC-T201';
const HOME = { lat: 51.903517, lon: 4.468931 };
const HER = H.offset(HOME, -25, 14);

describe('two monitoring consoles', { concurrency: false }, () => {
  let k, mq, a, b, alertId;
  const bRequests = [];
  const ACK_NOTE = 'Console A: calling her now';
  const NOTE = 'Console A: unit 7 on its way';

  before(async () => {
    k = await H.startKordon({ name: 'consoles', cases: [H.makeCase({ id: CASE, offender: OFF, victim: VIC, home: HOME })] });
    mq = await H.connectMqtt(k.mqttUrl, 'consoles');
    a = await H.openBrowser({ viewport: { width: 1440, height: 900 } });
    b = await H.openBrowser({ viewport: { width: 1440, height: 900 } });
  });

  after(async () => {
    for (const x of [a, b]) if (x) await x.close();
    if (mq) await mq.endAsync(true);
    if (k) await k.stop();
  });

  test('both consoles sign in as monitoring and see the same breach', async () => {
    await H.signIn(a.page, k.http, 'monitoring');
    await H.signIn(b.page, k.http, 'monitoring');
    const t0 = Date.now() - 40000;
    const vic = new H.Device(mq, VIC, t0), off = new H.Device(mq, OFF, t0);
    const f = await vic.fix(HER);
    await H.waitPosition(k, VIC, f.ts);
    for (const p of H.approach(H.offset(HER, 0, 1400), HER, { step: 100, stop: 80 })) await off.fix(p, { dt: 2 });
    const rowSel = `${tid('alert-row')}[data-kind="proximity_breach"]`;
    await a.page.locator(rowSel).waitFor({ timeout: 5000 });
    await b.page.locator(rowSel).waitFor({ timeout: 5000 });
    alertId = await a.page.locator(rowSel).getAttribute('data-alert-id');
    assert.equal(await b.page.locator(rowSel).getAttribute('data-alert-id'), alertId, 'the same alert on both');
  });

  test("console B sees A's acknowledgement on the alert without reloading", async () => {
    assert.ok(alertId);
    // Both open the alert.
    for (const x of [a, b]) {
      await x.page.locator(`${tid('alert-row')}[data-alert-id="${alertId}"]`).click();
      await x.page.locator(`${tid('alert-detail')}[data-alert-id="${alertId}"]`).waitFor();
    }
    // From here on, B must neither reload nor ask the API for the alert.
    await b.page.evaluate(() => (window.__sameDocument = 'yes'));
    b.page.on('request', (r) => bRequests.push(r.url()));
    assert.equal(await b.page.locator(tid('alert-ack')).isEnabled(), true, 'B could acknowledge it');
    assert.equal(await b.page.locator(`${tid('alert-history')} li[data-kind="ack"]`).count(), 0);

    await a.page.locator(tid('ack-note')).fill(ACK_NOTE);
    const clicked = Date.now();
    await a.page.locator(tid('alert-ack')).click();
    const hist = b.page.locator(`${tid('alert-history')} li[data-kind="ack"]`);
    await hist.waitFor({ timeout: 5000 });
    const took = Date.now() - clicked;
    assert.match(await hist.innerText(), new RegExp(ACK_NOTE));
    assert.match(await hist.innerText(), /demo monitoring room/);
    await b.page.locator(`${tid('alert-row')}[data-alert-id="${alertId}"][data-state="acknowledged"]`).waitFor({ timeout: 2000 });
    await H.waitFor(async () => b.page.locator(tid('alert-ack')).isDisabled(), { timeout: 2000, message: "B's acknowledge button disabled" });
    assert.ok(took < 3000, `B saw the acknowledgement ${took} ms after A clicked`);
    assert.equal(await b.page.evaluate(() => window.__sameDocument), 'yes', 'B did not reload');
  });

  test("console B sees A's note appear on the alert", async () => {
    assert.ok(alertId);
    await a.page.locator(tid('note-text')).fill(NOTE);
    await a.page.locator(tid('note-submit')).click();
    const note = b.page.locator(`${tid('alert-history')} li[data-kind="note"]`);
    await note.waitFor({ timeout: 5000 });
    assert.match(await note.innerText(), new RegExp(NOTE));
    assert.equal(await b.page.evaluate(() => window.__sameDocument), 'yes', 'B did not reload');
    const asked = bRequests.filter((u) => /\/api\/v1\/alerts/.test(u));
    assert.deepEqual(asked, [], 'B learnt it from the stream, not by asking the API');
    // The API agrees with what B shows.
    const rec = (await k.api('monitoring', 'GET', `/api/v1/alerts/${alertId}`)).json;
    assert.equal(rec.acknowledgement.note, ACK_NOTE);
    assert.deepEqual(rec.notes.map((n) => n.text), [NOTE]);
  });

  test('no page errors', () => {
    assert.deepEqual(a.errors, []);
    assert.deepEqual(b.errors, []);
  });
});
