// An administrator never learns where a protected person is. Signed in as
// admin, the browser visits every admin page (the intake list, a case in
// the editor with its check, the case page) and reads the live stream while
// the devices cause alerts: a contact-ban warning and breach, a zone
// breach, a tamper alarm, her battery running out. No response body and no
// stream event may hold her coordinates, nor his from while he was near her
// (which, on a contact-ban alert, say where she is).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as H from './lib/harness.mjs';

const { tid } = H;
const CASE = 'TST-2026-0501';
const OFF = 'OFF-T501';
const VIC = 'VIC-T501';
// Her home (the exclusion zone) in the south-east; she is at work in the
// north-west, 6 km away, where he comes for her.
const HOME = { lat: 51.904277, lon: 4.512634 };
const WORK = { lat: 51.937841, lon: 4.436257 };
const HER = H.offset(WORK, 13, -7);

/** Every way a coordinate can be written with 4 to 6 decimals (rounded or cut). */
function spellings(v) {
  const out = new Set();
  for (const d of [4, 5, 6]) {
    out.add(v.toFixed(d));
    const f = 10 ** d;
    out.add((Math.trunc(v * f) / f).toFixed(d));
  }
  return [...out];
}

/** Patterns of the coordinates of `fixes`, each not preceded by a digit. */
function patterns(fixes, who) {
  const list = [];
  for (const f of fixes) {
    for (const axis of ['lat', 'lon']) {
      for (const s of spellings(f[axis])) list.push({ who: `${who} ${axis} ${f[axis]}`, s, re: new RegExp(`(?<![0-9])${s.replace('.', '\\.')}`) });
    }
  }
  return list;
}

function leaks(text, forbidden) {
  const found = [];
  for (const p of forbidden) {
    const m = p.re.exec(text);
    if (m) found.push(`${p.who} as "${p.s}": …${text.slice(Math.max(0, m.index - 80), m.index + 40)}…`);
  }
  return found;
}

describe('admin privacy', { concurrency: false }, () => {
  let k, mq, browser, page;
  const bodies = []; // {url, status, type, text}
  const pending = [];
  let forbidden = [];
  const caseFile = H.makeCase({ id: CASE, offender: OFF, victim: VIC, home: HOME });
  const alertIds = {};

  before(async () => {
    k = await H.startKordon({ name: 'privacy', cases: [caseFile] });
    mq = await H.connectMqtt(k.mqttUrl, 'privacy');
    browser = await H.openBrowser({ viewport: { width: 1440, height: 900 } });
    page = browser.page;
    page.on('response', (r) => {
      const type = r.headers()['content-type'] || '';
      if (type.includes('text/event-stream')) {
        // Streams never end: read below, in the page.
        bodies.push({ url: r.url(), status: r.status(), type, text: null, stream: true });
        return;
      }
      pending.push(
        r.body().then(
          (buf) => bodies.push({ url: r.url(), status: r.status(), type, text: buf.toString('utf8') }),
          (e) => bodies.push({ url: r.url(), status: r.status(), type, text: null, length: r.headers()['content-length'], error: String(e.message).split('\n')[0] }),
        ),
      );
    });
  });

  after(async () => {
    if (browser) await browser.close();
    if (mq) await mq.endAsync(true);
    if (k) await k.stop();
  });

  async function visitAdminPages() {
    await page.goto(`${k.http}/#/intake`);
    await page.locator(`${tid('intake-cases')} a[data-case="${CASE}"]`).waitFor();
    await page.locator(`${tid('intake-cases')} a[data-case="${CASE}"]`).click();
    await page.waitForURL(new RegExp(`#/intake/${CASE}$`));
    await H.waitFor(async () => (await page.locator(tid('intake-editor')).inputValue()).includes(CASE), { message: 'the case in the editor' });
    await page.locator(tid('intake-check')).click();
    await page.locator(tid('intake-ok')).waitFor();
    await page.goto(`${k.http}/#/case/${CASE}`);
    await page.locator(tid('timeline')).waitFor();
    await page.locator(tid('case-map')).waitFor();
    await page.waitForTimeout(1800); // the timeline refetches 1.5 s after an alert
  }

  test('signs in as admin and visits every admin page', async () => {
    await H.signIn(page, k.http, 'admin');
    await page.waitForURL(/#\/intake$/);
    await visitAdminPages();
  });

  test('reads the live stream as admin while the devices cause alerts', async () => {
    // The stream, read from the page with the session cookie.
    const status = await page.evaluate(async () => {
      window.__adminStream = '';
      const r = await fetch('/api/v1/stream', { credentials: 'same-origin', headers: { Accept: 'text/event-stream' } });
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      (async () => {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          window.__adminStream += decoder.decode(value, { stream: true });
        }
      })();
      return r.status;
    });
    assert.equal(status, 200);

    const t0 = Date.now() - 200000;
    const vic = new H.Device(mq, VIC, t0), off = new H.Device(mq, OFF, t0);
    const f = await vic.fix(HER);
    await H.waitPosition(k, VIC, f.ts);
    // He drives up to her from 2 km north: a contact-ban warning, then a breach.
    for (const p of H.approach(H.offset(HER, 2000, 0), HER, { step: 100, stop: 80 })) await off.fix(p, { dt: 2 });
    const near = [...off.sent];
    // Then to her home, 6 km away (130 s at 49 m/s), and into its zone.
    const toHome = H.approach(H.offset(HOME, 600, 300), HOME, { step: 100, stop: 20 });
    await off.fix(toHome[0], { dt: 130 });
    for (const p of toHome.slice(1)) await off.fix(p, { dt: 2 });
    const far = off.sent.slice(near.length);
    // His strap is cut there; her battery is nearly empty.
    await off.status({ ts: off.ts + 1000, strap: 'tampered' });
    await vic.status({ ts: vic.ts + 1000, batt: 4 });

    // What must not reach an admin: her positions, and his near her.
    forbidden = [...patterns(vic.sent, 'her'), ...patterns(near, 'his (near her)')];
    // The test's own design: none of those may be spelt by what an admin may see.
    const allowed = JSON.stringify(caseFile) + JSON.stringify(far);
    assert.deepEqual(leaks(allowed, forbidden), [], 'the forbidden spellings are distinct from the case file and his far positions');
    assert.ok(near.every((p) => H.distanceM(p, HER) < 2100) && far.every((p) => H.distanceM(p, HER) > 5000));

    for (const kind of ['proximity_breach', 'zone_breach', 'tamper', 'battery_critical']) {
      alertIds[kind] = (await H.waitAlert(k, (a) => a.kind === kind, { message: `a ${kind}` })).id;
    }
    // The admin's stream carried each of them.
    await H.waitFor(async () => {
      const text = await page.evaluate(() => window.__adminStream);
      return Object.values(alertIds).every((id) => text.includes(id));
    }, { timeout: 10000, message: "every alert on the admin's stream" });
    await page.waitForTimeout(1000);
  });

  test('visits every admin page again and asks the API what an admin may ask', async () => {
    await visitAdminPages();
    const probes = [
      '/api/v1/alerts',
      ...Object.values(alertIds).map((id) => `/api/v1/alerts/${id}`),
      `/api/v1/cases/${CASE}`,
      `/api/v1/cases/${CASE}/timeline`,
      `/api/v1/bans?person=${OFF}`,
      `/api/v1/bans?person=${VIC}`,
      `/api/v1/bans?lat=${HER.lat}&lon=${HER.lon}`,
      '/api/v1/positions',
      `/api/v1/devices/${VIC}/track`,
      `/api/v1/devices/${OFF}/track`,
      `/api/v1/alerts/${alertIds.proximity_breach}/playback`,
    ];
    const answers = await page.evaluate(async (urls) => {
      const out = {};
      for (const u of urls) {
        const r = await fetch(u, { credentials: 'same-origin' });
        out[u] = { status: r.status, text: await r.text() };
      }
      return out;
    }, probes);
    const statuses = {};
    for (const [u, a] of Object.entries(answers)) {
      statuses[u] = a.status;
      bodies.push({ url: k.http + u, status: a.status, type: 'read in the page', text: a.text });
    }
    for (const u of ['/api/v1/positions', `/api/v1/alerts/${alertIds.proximity_breach}/playback`]) {
      assert.equal(statuses[u], 403, `GET ${u} as admin`);
    }
    // docs/dashboard.md lists a track route for monitoring; whether it is
    // served or not, an admin does not get one.
    for (const u of [`/api/v1/devices/${VIC}/track`, `/api/v1/devices/${OFF}/track`]) {
      assert.ok([403, 404].includes(statuses[u]), `GET ${u} as admin: ${statuses[u]}`);
    }
    assert.equal(statuses['/api/v1/alerts'], 200);
    await Promise.all(pending);
  });

  test("no response body holds her coordinates, nor his near her", async () => {
    await Promise.all(pending);
    const api = bodies.filter((b) => !b.stream && new URL(b.url).pathname.startsWith('/api/'));
    assert.ok(api.length >= 20, `the API answered the pages (${api.length} responses)`);
    // The pages did read alerts with positions stripped, not nothing.
    const list = api.filter((b) => new URL(b.url).pathname === '/api/v1/alerts' && b.status === 200).at(-1);
    const alerts = JSON.parse(list.text);
    const breach = alerts.find((a) => a.id === alertIds.proximity_breach);
    assert.ok(breach, 'the admin sees the breach exists');
    assert.equal(breach.protected, undefined);
    assert.equal(breach.offender, undefined, "no offender position on a contact-ban alert");
    assert.equal(breach.distance_m, undefined, 'no distance on a contact-ban alert');
    const zone = alerts.find((a) => a.id === alertIds.zone_breach);
    // Not his position either: in the zone around her home it places her.
    assert.ok(zone && !zone.offender && !zone.protected, 'a zone breach shows neither party to an admin');

    // The patterns do find her where she may be seen: the monitoring room's list.
    const room = (await k.api('monitoring', 'GET', '/api/v1/alerts')).text;
    assert.ok(leaks(room, forbidden).some((x) => x.startsWith('her ')), "the monitoring room's alerts spell her position as the patterns expect");

    const found = [];
    for (const b of bodies) {
      if (b.stream) continue;
      // Chromium keeps no data of an empty body (a 404 without one).
      if (b.text === null && b.length === '0') continue;
      assert.notEqual(b.text, null, `read the body of ${b.url}: ${b.status} ${b.error}`);
      const hits = leaks(b.text, forbidden);
      if (!hits.length) continue;
      const p = new URL(b.url).pathname;
      if (p.startsWith('/assets/')) {
        // A static file (the basemap is full of coordinates): the same bytes
        // for anyone, signed in or not, cannot be about her.
        const anon = await fetch(b.url).then((r) => r.text());
        if (anon === b.text) continue;
      }
      found.push(`${b.url} (${b.status}):\n  ${hits.join('\n  ')}`);
    }
    assert.deepEqual(found, [], 'bodies that locate her');
  });

  test("the admin's stream holds no position at all, and not hers", async () => {
    const text = await page.evaluate(() => window.__adminStream);
    const events = text.split('\n\n').filter((e) => e.trim() && !e.startsWith(':'));
    const names = events.map((e) => (e.match(/^event: ?(.*)$/m) || [])[1]);
    assert.ok(names.filter((n) => n === 'alert').length >= 4, `alert events on the stream: ${names.join(',')}`);
    assert.ok(!names.includes('positions') && !names.includes('position'), 'no position events for an admin');
    assert.deepEqual(leaks(text, forbidden), [], 'stream events that locate her');
  });

  test('no page errors', () => {
    assert.deepEqual(browser.errors, []);
  });
});
