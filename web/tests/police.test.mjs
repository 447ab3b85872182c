// The police view on a phone (390×844): the street lookup (tap a place on
// the map, search a device id), the queue with police alerts only (a
// contact-ban warning is not for them, a breach is), acknowledging one, and
// nothing wider than the screen.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as H from './lib/harness.mjs';

const { tid } = H;
// Case A: he only comes within her warning radius (not a police matter).
const A = { id: 'TST-2026-0301', off: 'OFF-T301', vic: 'VIC-T301', home: { lat: 51.893861, lon: 4.412735 }, her: { lat: 51.935172, lon: 4.421538 } };
// Case B: he comes within her alarm radius (a breach: the police's). Her home
// lies inside the police map's first view; she is at work, 2 km from it.
const B = { id: 'TST-2026-0302', off: 'OFF-T302', vic: 'VIC-T302', home: { lat: 51.921347, lon: 4.501862 }, her: { lat: 51.906613, lon: 4.523917 } };
const PHONE = { width: 390, height: 844 };

describe('police view on a phone', { concurrency: false }, () => {
  let k, mq, browser, page, warningId, breachId;

  before(async () => {
    k = await H.startKordon({
      name: 'police',
      cases: [A, B].map((c) => H.makeCase({ id: c.id, offender: c.off, victim: c.vic, home: c.home })),
    });
    mq = await H.connectMqtt(k.mqttUrl, 'police');
    browser = await H.openBrowser({ viewport: PHONE, mobile: true });
    page = browser.page;
  });

  after(async () => {
    if (browser) await browser.close();
    if (mq) await mq.endAsync(true);
    if (k) await k.stop();
  });

  async function noOverflow(where) {
    const m = await page.evaluate(() => {
      const view = document.querySelector('main.view');
      // Anything sticking out to the right that no scroller of its own clips
      // (the map's panes and a table's scroll box clip theirs).
      const clipped = (el) => {
        for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
          if (p === view) return false;
          if (getComputedStyle(p).overflowX !== 'visible') return true;
        }
        return false;
      };
      const out = [];
      for (const el of document.body.querySelectorAll('*')) {
        const r = el.getBoundingClientRect();
        if (!r.width || !r.height || r.right <= window.innerWidth + 0.5 || clipped(el)) continue;
        if (getComputedStyle(el).visibility === 'hidden') continue;
        out.push(`${el.tagName.toLowerCase()}.${[...el.classList].join('.')} right=${Math.round(r.right)}`);
      }
      return { scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth, viewScroll: view.scrollWidth, viewClient: view.clientWidth, out };
    });
    assert.equal(m.innerWidth, PHONE.width, 'a phone-wide layout viewport');
    assert.ok(m.scrollWidth <= PHONE.width, `${where}: the page is ${m.scrollWidth} px wide on a ${PHONE.width} px screen`);
    assert.ok(m.viewScroll <= m.viewClient, `${where}: the view scrolls sideways (${m.viewScroll} > ${m.viewClient})`);
    assert.deepEqual(m.out, [], `${where}: elements beyond the right edge`);
  }

  /** Taps the police map at (lat, lon), as a finger would. */
  async function tapMap(lat, lon) {
    const { x, y } = await page.evaluate(([lat, lon]) => {
      const el = document.querySelector('[data-testid="map"]');
      const map = window.__kordonMaps.find((m) => m.getContainer() === el);
      const p = map.latLngToContainerPoint([lat, lon]);
      const r = el.getBoundingClientRect();
      if (p.x < 10 || p.y < 10 || p.x > r.width - 10 || p.y > r.height - 10) throw new Error(`(${lat}, ${lon}) is not in the map's view`);
      return { x: r.left + p.x, y: r.top + p.y };
    }, [lat, lon]);
    await page.touchscreen.tap(x, y);
  }

  test('signs in as police on a phone; nothing overflows', async () => {
    await H.signIn(page, k.http, 'police');
    await page.waitForURL(/#\/police$/);
    await page.locator(tid('map')).waitFor();
    await page.waitForTimeout(300);
    await noOverflow('the police view');
  });

  test("tapping the map inside an exclusion zone lists that ban", async () => {
    await tapMap(B.home.lat + 0.0003, B.home.lon - 0.0004);
    const result = page.locator(`${tid('lookup-result')}[data-case="${B.id}"][data-order="ban-home"]`);
    await result.waitFor({ timeout: 5000 });
    assert.equal(await result.getAttribute('data-kind'), 'exclusion_zone');
    assert.match(await result.innerText(), /inside/i);
    const all = await page.locator(tid('lookup-result')).evaluateAll((els) => els.map((e) => `${e.dataset.case}/${e.dataset.order}`));
    assert.ok(!all.some((x) => x.startsWith(A.id)), `case A's bans do not cover that place: ${all}`);
    await noOverflow('the place lookup');
    // A place outside every zone: no bans.
    await tapMap(B.home.lat - 0.02, B.home.lon - 0.05);
    await page.locator(tid('lookup-none')).waitFor({ timeout: 5000 });
  });

  test("searching the offender's device id lists the case's bans", async () => {
    await page.locator(tid('lookup-person')).fill(B.off);
    await page.locator(tid('lookup-submit')).click();
    await H.waitFor(async () => (await page.locator(`${tid('lookup-result')}[data-case="${B.id}"]`).count()) === 2, { timeout: 5000, message: "case B's two orders" });
    const found = await page.locator(tid('lookup-result')).evaluateAll((els) => els.map((e) => `${e.dataset.case}/${e.dataset.order}/${e.dataset.kind}`).sort());
    assert.deepEqual(found, [`${B.id}/ban-home/exclusion_zone`, `${B.id}/contact-ban-p1/contact_ban`]);
    await noOverflow('the person lookup');
  });

  test('the queue holds police alerts only: a breach, not a warning', async () => {
    const t0 = Date.now() - 40000;
    // Case A: from 2 km away to 600 m of her: a contact-ban warning.
    const vicA = new H.Device(mq, A.vic, t0), offA = new H.Device(mq, A.off, t0);
    let f = await vicA.fix(A.her);
    await H.waitPosition(k, A.vic, f.ts);
    for (const p of H.approach(H.offset(A.her, 2000, 0), A.her, { step: 100, stop: 600 })) await offA.fix(p, { dt: 2 });
    const warning = await H.waitAlert(k, (x) => x.case === A.id && x.kind === 'proximity_warning', { message: "case A's contact-ban warning" });
    warningId = warning.id;
    assert.equal(warning.needs_police, false);
    // Case B: to 90 m of her: a breach.
    const vicB = new H.Device(mq, B.vic, t0), offB = new H.Device(mq, B.off, t0);
    f = await vicB.fix(B.her);
    await H.waitPosition(k, B.vic, f.ts);
    for (const p of H.approach(H.offset(B.her, 0, -1500), B.her, { step: 100, stop: 90 })) await offB.fix(p, { dt: 2 });
    const row = page.locator(`${tid('alert-row')}[data-kind="proximity_breach"]`);
    await row.waitFor({ timeout: 5000 });
    breachId = await row.getAttribute('data-alert-id');
    // Give a stray warning row every chance to show up before looking.
    await page.waitForTimeout(1000);
    const rows = await page.locator(tid('alert-row')).evaluateAll((els) => els.map((e) => ({ id: e.dataset.alertId, kind: e.dataset.kind })));
    assert.deepEqual(rows, [{ id: breachId, kind: 'proximity_breach' }], 'only the breach');
    assert.ok(!rows.some((r) => r.id === warningId), 'not the warning');
    // The monitoring room has both; the police API agrees with the screen.
    const room = (await k.api('monitoring', 'GET', '/api/v1/alerts')).json.map((x) => x.id);
    assert.ok(room.includes(warningId) && room.includes(breachId));
    const police = (await k.api('police', 'GET', '/api/v1/alerts')).json;
    assert.deepEqual(police.map((x) => x.id), [breachId]);
    await noOverflow('the queue');
  });

  test('the officer opens the breach and acknowledges it; the phone screen does not overflow', async () => {
    assert.ok(breachId);
    await page.locator(`${tid('alert-row')}[data-alert-id="${breachId}"]`).tap();
    await page.locator(`${tid('alert-detail')}[data-alert-id="${breachId}"]`).waitFor();
    for (const role of ['offender', 'protected']) await page.locator(`[data-testid="map"] [data-party="${role}"]`).waitFor();
    await noOverflow('the selected alert');
    await page.locator(tid('alert-ack')).tap();
    await page.locator(`${tid('alert-history')} li[data-kind="police_ack"]`).waitFor({ timeout: 5000 });
    const rec = (await k.api('monitoring', 'GET', `/api/v1/alerts/${breachId}`)).json;
    assert.equal(rec.police_acknowledgement.operator, 'demo police dispatch');
    assert.equal(rec.acknowledgement, undefined, "the police's acknowledgement is not the room's");
    await page.locator(`${tid('alert-row')}[data-alert-id="${breachId}"][data-state="acknowledged"]`).waitFor();
    await H.waitFor(async () => (await page.locator('.distance-label').count()) === 1, { message: 'one distance label' });
    await noOverflow('after acknowledging');
    // The phone's first screen: the queue, the search and the map.
    await page.evaluate(() => document.querySelector('main.view').scrollTo(0, 0));
    await H.screenshot(page, 'dashboard-police');
  });

  test('no page errors', () => {
    assert.deepEqual(browser.errors, []);
  });
});
