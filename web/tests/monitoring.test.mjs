// The monitoring room: sign in, the offender's marker moves, an approach
// raises a contact-ban breach row, acknowledge it, resolve it (disposition
// and note both required), and find both on the case's timeline; the
// deadline report lists it.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as H from './lib/harness.mjs';

const { tid } = H;
const CASE = 'TST-2026-0101';
const OFF = 'OFF-T101';
const VIC = 'VIC-T101';
// Her home in Kralingen; she is at home, a few metres from its centre.
const HOME = { lat: 51.917743, lon: 4.532719 };
const HER = H.offset(HOME, 18, 11);

describe('monitoring room', { concurrency: false }, () => {
  let k, mq, browser, page, off, vic;
  let alertId;
  const ACK_NOTE = 'Calling the offender now';
  const RESOLVE_NOTE = 'Unit 12 found him at her door; arrested';

  before(async () => {
    k = await H.startKordon({ name: 'monitoring', cases: [H.makeCase({ id: CASE, offender: OFF, victim: VIC, home: HOME })] });
    mq = await H.connectMqtt(k.mqttUrl, 'monitoring');
    // Fixes are stamped from 45 s ago on, spaced as a car would drive.
    const t0 = Date.now() - 45000;
    off = new H.Device(mq, OFF, t0);
    vic = new H.Device(mq, VIC, t0);
    browser = await H.openBrowser({ viewport: { width: 1440, height: 900 } });
    page = browser.page;
  });

  after(async () => {
    if (browser) await browser.close();
    if (mq) await mq.endAsync(true);
    if (k) await k.stop();
  });

  test('signs in with the monitoring token and shows the queue', async () => {
    await H.signIn(page, k.http, 'monitoring');
    await page.waitForURL(/#\/queue$/);
    await page.locator(tid('map')).waitFor();
    assert.match(await page.locator('.who').innerText(), /demo monitoring room/);
  });

  test("the offender's marker moves on the map between two fixes", async () => {
    const f = await vic.fix(HER);
    await H.waitPosition(k, VIC, f.ts);
    const marker = page.locator(`path[data-device="${OFF}"]`);
    const far = H.offset(HER, 1600, 0);
    await off.fix(far, { dt: 2 });
    await marker.waitFor({ state: 'attached' });
    assert.ok(await page.locator(`path.device-${OFF}`).count(), `the marker has class device-${OFF}`);
    const centre = async () => {
      const b = await marker.boundingBox();
      return b && { x: b.x + b.width / 2, y: b.y + b.height / 2 };
    };
    const first = await H.waitFor(centre, { message: 'the marker drawn' });
    // 500 m south in 10 s: 50 m/s, a plausible car.
    await off.fix(H.offset(far, -500, 0), { dt: 10 });
    const moved = await H.waitFor(async () => {
      const c = await centre();
      return c && Math.hypot(c.x - first.x, c.y - first.y) > 5 && c;
    }, { timeout: 5000, message: 'the marker to move' });
    assert.ok(moved.y > first.y + 5, `moved south on the screen: ${JSON.stringify(first)} -> ${JSON.stringify(moved)}`);
    assert.ok(Math.abs(moved.x - first.x) < 3, 'straight south, not sideways');
  });

  test('an approach raises a proximity_breach row within a few seconds', async () => {
    // From where he is, on at 50 m/s (the first point is where he stands).
    const points = H.approach(H.offset(HER, 1100, 0), HER, { step: 100, stop: 90 }).slice(1);
    let breachSentAt = null;
    for (const p of points) {
      await off.fix(p, { dt: 2 });
      if (breachSentAt === null && H.distanceM(p, HER) < 300 - 20) breachSentAt = Date.now();
    }
    const row = page.locator(`${tid('alert-row')}[data-kind="proximity_breach"]`);
    await row.first().waitFor({ timeout: 5000 });
    const took = Date.now() - breachSentAt;
    assert.ok(took < 5000, `row shown ${took} ms after the breaching fix`);
    assert.equal(await row.count(), 1, 'one contact-ban breach row');
    alertId = await row.getAttribute('data-alert-id');
    assert.match(alertId, /^[0-9a-f]{16,}$/);
    const rec = (await k.api('monitoring', 'GET', `/api/v1/alerts/${alertId}`)).json;
    assert.equal(rec.kind, 'proximity_breach');
    assert.equal(rec.case, CASE);
    assert.match(await row.innerText(), new RegExp(CASE));
  });

  test('selecting the alert shows its detail and both parties on the map', async () => {
    assert.ok(alertId, 'an alert from the previous step');
    await page.locator(`${tid('alert-row')}[data-alert-id="${alertId}"]`).click();
    await page.waitForURL(new RegExp(`#/alert/${alertId}$`));
    await page.locator(`${tid('alert-detail')}[data-alert-id="${alertId}"]`).waitFor();
    const mapBox = await page.locator(tid('map')).boundingBox();
    for (const role of ['offender', 'protected']) {
      const party = page.locator(`[data-testid="map"] [data-party="${role}"]`);
      // A redraw replaces the markers (once in four CI runs between the
      // wait and the measure): measure the marker on the map at the time.
      let b = null;
      await H.waitFor(async () => {
        b = await party.boundingBox({ timeout: 1000 }).catch(() => null);
        return b !== null;
      }, { message: `the ${role} marker drawn` });
      assert.ok(b && b.x >= mapBox.x && b.x + b.width <= mapBox.x + mapBox.width && b.y >= mapBox.y && b.y + b.height <= mapBox.y + mapBox.height,
        `${role} marker inside the map: ${JSON.stringify(b)} in ${JSON.stringify(mapBox)}`);
    }
    // How they move: he drove up and stands beside her, which the police hear of.
    const movement = page.locator(tid('alert-movement'));
    await movement.waitFor();
    assert.match(await movement.getAttribute('data-reading'), /^(approach|together)$/);
    assert.match(await movement.innerText(), /^(Approach|Together)/);
    assert.equal(await page.locator(`[data-party="offender"]`).getAttribute('data-party-device'), OFF);
    assert.equal(await page.locator(`[data-party="protected"]`).getAttribute('data-party-device'), VIC);
    // A redraw fades the old distance label out over 200 ms: wait for the one left.
    await H.waitFor(async () => (await page.locator('.distance-label').count()) === 1, { message: 'one distance label' });
    assert.match(await page.locator('.distance-label').innerText(), /^\d+ m$/);
    await H.screenshot(page, 'dashboard-monitoring');
  });

  test('acknowledges the alert', async () => {
    assert.ok(alertId);
    const ack = page.locator(tid('alert-ack'));
    assert.equal(await ack.isEnabled(), true);
    await page.locator(tid('ack-note')).fill(ACK_NOTE);
    await ack.click();
    await H.waitFor(async () => !(await ack.isEnabled()), { message: 'the ack button disabled after acknowledging' });
    const hist = page.locator(`${tid('alert-history')} li[data-kind="ack"]`);
    await hist.waitFor();
    assert.match(await hist.innerText(), new RegExp(ACK_NOTE));
    await page.locator(`${tid('alert-row')}[data-alert-id="${alertId}"][data-state="acknowledged"]`).waitFor();
    const rec = (await k.api('monitoring', 'GET', `/api/v1/alerts/${alertId}`)).json;
    assert.equal(rec.acknowledgement.operator, 'demo monitoring room');
    assert.equal(rec.acknowledgement.note, ACK_NOTE);
  });

  test('resolves it: submit stays disabled until a disposition and a note are given', async () => {
    assert.ok(alertId);
    await page.locator(tid('alert-resolve')).click();
    const dispo = page.locator(tid('disposition-select'));
    const note = page.locator(tid('resolve-note'));
    const submit = page.locator(tid('resolve-submit'));
    await dispo.waitFor();
    await H.waitFor(async () => (await dispo.locator('option').count()) > 1, { message: 'the dispositions' });
    assert.equal(await submit.isDisabled(), true, 'disabled with neither');
    await dispo.selectOption('unit_dispatched');
    assert.equal(await submit.isDisabled(), true, 'disabled with a disposition only');
    await dispo.selectOption('');
    await note.fill(RESOLVE_NOTE);
    assert.equal(await submit.isDisabled(), true, 'disabled with a note only');
    await note.fill('   ');
    await dispo.selectOption('unit_dispatched');
    assert.equal(await submit.isDisabled(), true, 'disabled with a blank note');
    await note.fill(RESOLVE_NOTE);
    assert.equal(await submit.isEnabled(), true, 'enabled with both');
    await submit.click();
    const hist = page.locator(`${tid('alert-history')} li[data-kind="resolution"]`);
    await hist.waitFor();
    assert.match(await hist.innerText(), /Police unit dispatched/);
    assert.match(await hist.innerText(), new RegExp(RESOLVE_NOTE));
    const rec = (await k.api('monitoring', 'GET', `/api/v1/alerts/${alertId}`)).json;
    assert.equal(rec.resolution.disposition, 'unit_dispatched');
    assert.equal(rec.resolution.note, RESOLVE_NOTE);
    assert.equal(rec.resolution.operator, 'demo monitoring room');
  });

  test("the case page's timeline holds the acknowledgement and the resolution", async () => {
    assert.ok(alertId);
    await page.locator(`${tid('alert-detail')} a[href="#/case/${CASE}"]`).first().click();
    await page.waitForURL(new RegExp(`#/case/${CASE}$`));
    const items = page.locator(tid('timeline-item'));
    await H.waitFor(async () => (await page.locator(`${tid('timeline-item')}[data-kind="resolve"]`).count()) > 0, { message: 'the resolution on the timeline' });
    const ack = page.locator(`${tid('timeline-item')}[data-kind="ack"]`);
    assert.equal(await ack.count(), 1, 'one acknowledgement');
    const ackText = await ack.innerText();
    assert.match(ackText, /demo monitoring room/);
    assert.match(ackText, new RegExp(ACK_NOTE));
    assert.equal(await ack.locator(`a[href="#/alert/${alertId}"]`).count(), 1, 'the acknowledgement links to its alert');
    const res = page.locator(`${tid('timeline-item')}[data-kind="resolve"]`);
    assert.equal(await res.count(), 1, 'one resolution');
    const resText = await res.innerText();
    assert.match(resText, /Police unit dispatched/, 'with its disposition');
    assert.match(resText, new RegExp(RESOLVE_NOTE));
    assert.match(resText, /demo monitoring room/);
    assert.equal(await res.locator(`a[href="#/alert/${alertId}"]`).count(), 1, 'the resolution links to its alert');
    assert.ok((await items.count()) >= 3, 'the alert itself is on the timeline too');
    assert.ok(await page.locator(`${tid('timeline-item')}[data-kind="alert"][data-level="breach"]`).count(), 'a breach item');
    await page.locator(tid('case-map')).waitFor();
    await page.waitForTimeout(300);
    await H.screenshot(page, 'dashboard-case');
  });

  test('the deadline report lists the alert, acknowledged within target', async () => {
    assert.ok(alertId);
    await page.locator('nav.nav a[href="#/report"]').click();
    await page.waitForURL(/#\/report$/);
    const row = page.locator(`${tid('deadline-table')} tr[data-alert-id="${alertId}"]`);
    await row.waitFor();
    const cells = row.locator('td.metric');
    assert.match(await cells.nth(0).getAttribute('class'), /\bmet\b/, 'acknowledged within target');
    assert.match(await cells.nth(1).getAttribute('class'), /\bmet\b/, 'resolved within target');
    await page.locator(tid('compliance-table')).waitFor();
    await H.screenshot(page, 'dashboard-report');
  });

  test('no page errors', () => {
    assert.deepEqual(browser.errors, []);
  });
});
