// The dashboard of a two-instance cluster (docs/cluster.md, "The dashboard
// in a cluster", "The alert API in a cluster"): two `kordon run` processes
// with a [cluster] section on a nats-server (JetStream) and a Mosquitto of
// the test's own. A case put through one instance's case API runs on
// whichever instance serves its shard; a monitoring console signed in to
// the instance serving FEWER shards sees the offender's contact-ban breach
// in its queue, from fixes the devices publish to Mosquitto; its
// acknowledgement through the dashboard is then what the OTHER instance's
// alert API answers for that alert. The case's history ("A case's history
// in a cluster"), gathered from every instance's journal: the console's
// case page shows the timeline with the breach and the acknowledgement, the
// alert's playback shows the offender's track, and both instances' APIs
// answer the same timeline and tracks.
import { describe, test, before, after } from 'node:test';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';
import * as H from './lib/harness.mjs';
import * as C from './lib/cluster.mjs';

const { tid } = H;
// The dashboard's English strings, to tell a message from the page's text.
const EN = JSON.parse(fs.readFileSync(path.join(H.REPO, 'web', 'static', 'i18n', 'en.json'), 'utf8'));
// A plain id: in a cluster it is a key of the cases' bucket.
const CASE = 'TST-2026-0301';
const OFF = 'OFF-T301';
const VIC = 'VIC-T301';
// The case's shard, as kordon finds it.
const CASE_SHARD = C.shardOf(CASE);
// Her home in Blijdorp; she is at home, a few metres from its centre.
const HOME = { lat: 51.927512, lon: 4.458842 };
const HER = H.offset(HOME, -12, 20);

describe('a two-instance cluster', { concurrency: false }, () => {
  let nats, mosquitto, mq, browser, page;
  let instances = [];
  let console_, other, alertId;
  // The devices, with the fixes they sent.
  let off, vic;
  const ACK_NOTE = 'Acknowledged on one instance, read on the other';
  // What the signed-in page was refused or failed to load.
  const refused = [];

  before(async () => {
    nats = await C.startNats();
    mosquitto = await C.startMosquitto();
    instances = await Promise.all(['k1', 'k2'].map((instance) => C.startInstance({ instance, nats, mosquitto })));
    const served = await C.allServed(instances);
    // The console goes to the instance serving fewer shards.
    [console_, other] = served[0].length <= served[1].length ? instances : [instances[1], instances[0]];
    mq = await H.connectMqtt(mosquitto.url, 'cluster');
    browser = await H.openBrowser({ viewport: { width: 1440, height: 900 } });
    page = browser.page;
  });

  after(async () => {
    // KORDON_KEEP_LOGS=dir: each instance's log there, to see what it did.
    if (process.env.KORDON_KEEP_LOGS) {
      fs.mkdirSync(process.env.KORDON_KEEP_LOGS, { recursive: true });
      for (const k of instances) fs.writeFileSync(path.join(process.env.KORDON_KEEP_LOGS, `${k.instance}.log`), k.log());
    }
    if (browser) await browser.close();
    if (mq) await mq.endAsync(true);
    for (const k of instances) await k.stop();
    if (mosquitto) await mosquitto.stop();
    if (nats) await nats.stop();
  });

  test('both instances together serve every shard', async () => {
    const [a, b] = await Promise.all([console_.shards(), other.shards()]);
    assert.equal(new Set([...a, ...b]).size, C.SHARDS, `${console_.instance}: ${a.length}, ${other.instance}: ${b.length}`);
    assert.ok(a.length > 0 && a.length <= b.length, `the console's instance ${console_.instance} serves fewer: ${a.length} vs ${b.length}`);
    console.log(`# ${console_.instance} serves ${a.length} shards (the console's), ${other.instance} ${b.length}`);
  });

  test('a case put through the case API is listed by both instances', async () => {
    const put = await other.api('admin', 'PUT', `/api/v1/cases/${CASE}`, H.makeCase({ id: CASE, offender: OFF, victim: VIC, home: HOME }));
    assert.equal(put.status, 201, put.text);
    assert.equal(put.json.outcome, 'created');
    for (const k of instances) {
      await H.waitFor(async () => (await k.api('admin', 'GET', `/api/v1/cases/${CASE}`)).status === 200, { message: `${k.instance} to have the case` });
    }
  });

  test('signed in as monitoring on the instance serving fewer shards, the breach shows in the queue', async () => {
    await H.signIn(page, console_.http, 'monitoring');
    await page.waitForURL(/#\/queue$/);
    await page.locator(tid('map')).waitFor();
    assert.match(await page.locator('.who').innerText(), /demo monitoring room/);
    // Signed in, the page asks for nothing it is refused.
    page.on('response', (r) => {
      if (r.status() >= 400) {
        refused.push(`${r.status()} ${r.request().method()} ${r.url()}`);
        r.text().then((body) => console.log(`# refused: ${r.status()} ${r.request().method()} ${r.url()} at ${new Date().toISOString()}: ${body}`), () => {});
      }
    });
    page.on('requestfailed', (r) => {
      // A request the page itself gave up (a redraw, the stream on closing) is no refusal.
      const why = r.failure()?.errorText || '';
      if (!why.includes('ERR_ABORTED')) refused.push(`failed ${r.method()} ${r.url()}: ${why}`);
    });

    const t0 = Date.now() - 45000;
    off = new H.Device(mq, OFF, t0);
    vic = new H.Device(mq, VIC, t0);
    // Her fix, again until the console's instance has it from her shard's
    // owner: then the bridge into JetStream is subscribed to Mosquitto, and
    // her shard has the case.
    await H.waitFor(async () => {
      const f = await vic.fix(HER, { dt: 0.5 });
      return H.waitPosition(console_, VIC, f.ts, 2000).catch(() => null);
    }, { timeout: 20000, interval: 0, message: "her fix on the console's instance" });

    // He drives up to her at 50 m/s and stands 90 m from her.
    for (const p of H.approach(H.offset(HER, 1200, 0), HER, { step: 100, stop: 90 })) await off.fix(p, { dt: 2 });
    const row = page.locator(`${tid('alert-row')}[data-kind="proximity_breach"]`);
    await row.first().waitFor({ timeout: 10000 });
    assert.equal(await row.count(), 1, 'one contact-ban breach row');
    alertId = await row.getAttribute('data-alert-id');
    assert.match(alertId, /^[0-9a-f]{16,}$/);
    assert.match(await row.innerText(), new RegExp(CASE));
    // The other instance's API knows the same alert.
    const rec = (await other.api('monitoring', 'GET', `/api/v1/alerts/${alertId}`)).json;
    assert.equal(rec.kind, 'proximity_breach');
    assert.equal(rec.case, CASE);
    assert.equal(rec.acknowledgement ?? null, null, 'not acknowledged yet');
  });

  test("the console's acknowledgement is what the other instance's API answers", async () => {
    assert.ok(alertId, 'an alert from the previous step');
    await page.locator(`${tid('alert-row')}[data-alert-id="${alertId}"]`).click();
    await page.waitForURL(new RegExp(`#/alert/${alertId}$`));
    await page.locator(`${tid('alert-detail')}[data-alert-id="${alertId}"]`).waitFor();
    const ack = page.locator(tid('alert-ack'));
    assert.equal(await ack.isEnabled(), true);
    await page.locator(tid('ack-note')).fill(ACK_NOTE);
    await ack.click();
    await H.waitFor(async () => !(await ack.isEnabled()), { message: 'the ack button disabled after acknowledging' });
    const hist = page.locator(`${tid('alert-history')} li[data-kind="ack"]`);
    await hist.waitFor();
    assert.match(await hist.innerText(), new RegExp(ACK_NOTE));
    await page.locator(`${tid('alert-row')}[data-alert-id="${alertId}"][data-state="acknowledged"]`).waitFor();

    const r = await other.api('monitoring', 'GET', `/api/v1/alerts/${alertId}`);
    assert.equal(r.status, 200, r.text);
    assert.ok(r.json.acknowledgement, `acknowledged: ${r.text}`);
    assert.equal(r.json.acknowledgement.operator, 'demo monitoring room');
    assert.equal(r.json.acknowledgement.note, ACK_NOTE);
  });

  test('a note the cluster stored while its shard changes hands is said to be saved, and not to be repeated', async () => {
    assert.ok(alertId, 'an alert from the previous steps');
    // What an instance answers when the shard's owner did not answer in
    // time (a hand-over): the note is in the shard's stream, applied once
    // the shard is served. Answered here by the test, as a hand-over is
    // not to be had on cue.
    const notes = `**/api/v1/alerts/${alertId}/notes`;
    const stored = {
      error: "the action is stored in shard 3's stream, but the shard's owner did not answer in 5 s (changing hands?); it is applied when the shard is served: GET the alert to see it, and do not send it again",
      stored: true,
    };
    await page.route(notes, (route) => route.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify(stored) }));
    const text = page.locator(tid('note-text'));
    await text.fill('Neighbour called: he drove off');
    await page.locator(tid('note-submit')).click();
    const pending = page.locator('.toast', { hasText: EN['detail.action_pending'] });
    await pending.waitFor();
    assert.equal(await pending.getAttribute('role'), 'status', 'told, not alarmed');
    assert.equal(await page.locator('.toast.error').count(), 0, 'no "Not done" for a stored action');
    assert.equal(await text.inputValue(), '', 'the note is cleared, so it is not sent again');
    await page.unroute(notes);
    // The page's own request was answered 503 by the test, not refused by kordon.
    for (let i = refused.length - 1; i >= 0; i--) if (refused[i].startsWith('503 POST') && refused[i].endsWith(`/alerts/${alertId}/notes`)) refused.splice(i, 1);
  });

  test("the console's case page shows the case's timeline, gathered from the journals", async () => {
    assert.ok(alertId, 'an alert from the previous steps');
    // From the alert's detail, as the officer goes there.
    await page.locator(`${tid('alert-detail')} a[href="#/case/${CASE}"]`).first().click();
    await page.waitForURL(new RegExp(`#/case/${CASE}$`));
    const history = page.locator('section.case-history');
    await history.locator(tid('timeline')).waitFor();
    const ack = page.locator(`${tid('timeline-item')}[data-kind="ack"]`);
    await ack.first().waitFor();
    const text = await history.innerText();
    assert.ok(!text.includes(EN['timeline.unavailable']), `not said to be unavailable:\n${text}`);
    assert.ok(!text.includes(EN['timeline.empty']), `not said to be empty:\n${text}`);
    assert.ok(!text.includes(EN['error.generic'].split('{')[0].trim()), `no error:\n${text}`);

    assert.equal(await ack.count(), 1, 'one acknowledgement (each journal record once)');
    const ackText = await ack.innerText();
    assert.match(ackText, new RegExp(EN['timeline.kind.ack']));
    assert.match(ackText, /demo monitoring room/);
    assert.match(ackText, new RegExp(ACK_NOTE));
    assert.equal(await ack.locator(`a[href="#/alert/${alertId}"]`).count(), 1, 'the acknowledgement links to its alert');

    // The alert: raised once (as a contact-ban warning, as he came within
    // 1000 m), and the breach it became, of the breach level.
    const ofAlert = page.locator(`${tid('timeline-item')}[data-kind="alert"]`).filter({ has: page.locator(`a[href="#/alert/${alertId}"]`) });
    const raised = ofAlert.filter({ hasText: `(${EN['timeline.phase.opened']})` });
    assert.equal(await raised.count(), 1, `the alert raised once: ${await ofAlert.allInnerTexts()}`);
    const breach = ofAlert.and(page.locator('[data-level="breach"]'));
    assert.ok((await breach.count()) >= 1, `the breach on the timeline: ${await ofAlert.allInnerTexts()}`);
    assert.match(await breach.first().innerText(), new RegExp(EN['kind.proximity_breach']));

    // The 14-day strip counts today's breach.
    const today = page.locator(`${tid('day-strip')} .day`).last();
    assert.equal(await today.getAttribute('data-worst'), 'breach');
  });

  test("the alert's playback opens on the console with the offender's track", async () => {
    assert.ok(alertId, 'an alert from the previous steps');
    // Back to the alert, through the timeline's link.
    await page.locator(`${tid('timeline-item')}[data-kind="ack"] a[href="#/alert/${alertId}"]`).click();
    await page.waitForURL(new RegExp(`#/alert/${alertId}$`));
    await page.locator(`${tid('alert-detail')}[data-alert-id="${alertId}"]`).waitFor();
    await page.locator(tid('playback-open')).click();
    const pane = page.locator(tid('playback'));
    const slider = pane.locator(tid('playback-slider'));
    await H.waitFor(async () => (await slider.count()) > 0 || !/…$/.test((await pane.innerText()).trim()), { message: 'the playback to load' });
    const paneText = await pane.innerText();
    assert.ok(!paneText.includes(EN['playback.unavailable']), `not said to be unavailable: ${paneText}`);
    assert.ok(!paneText.includes(EN['playback.empty']), `not said to be empty: ${paneText}`);
    await slider.waitFor();

    // Both tracks drawn, the offender's marker on his.
    // (His track is a straight line: to Playwright, a box of no width is not visible.)
    await page.locator('path.track-offender').waitFor({ state: 'attached' });
    await page.locator('path.track-protected').waitFor({ state: 'attached' });
    const marker = page.locator(`path.playback-marker.role-offender[data-playback-device="${OFF}"]`);
    await marker.waitFor({ state: 'attached' });
    // At the end he stands 90 m from her.
    const max = await slider.getAttribute('max');
    await slider.fill(max);
    assert.equal(await slider.inputValue(), max);
    await H.waitFor(async () => /distance (8[5-9]|9[0-5]) m/.test(await pane.locator('.playback-readout').innerText()), { message: 'the distance at the end of the playback' });
    assert.match(await pane.locator('.playback-readout').innerText(), new RegExp(EN['playback.after_onset']));
    assert.notEqual(await marker.evaluate((el) => el.style.display), 'none', "his marker shown at the end");

    // The API: his track holds every fix he sent, each once; hers some of hers.
    const r = await console_.api('monitoring', 'GET', `/api/v1/alerts/${alertId}/playback`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('kordon-instances-unanswered'), null, 'every journal answered');
    assert.equal(r.json.alert, alertId);
    assert.equal(r.json.case, CASE);
    const tsOf = (track) => (track || []).map((p) => Date.parse(p.ts));
    assert.deepEqual(tsOf(r.json.tracks[OFF]), off.sent.map((f) => f.ts), "his track: each of his fixes, once, in order");
    const his = r.json.tracks[OFF];
    const last = off.sent[off.sent.length - 1];
    assert.deepEqual([his[his.length - 1].lat, his[his.length - 1].lon], [last.lat, last.lon]);
    const hers = tsOf(r.json.tracks[VIC]);
    const sentHers = new Set(vic.sent.map((f) => f.ts));
    assert.ok(hers.length >= 1 && hers.every((ts) => sentHers.has(ts)), `her track: fixes she sent (${hers.length} of ${sentHers.size})`);
    assert.equal(new Set(hers).size, hers.length, 'each of her fixes once');

    // The other instance answers the same playback; the police none.
    const o = await other.api('monitoring', 'GET', `/api/v1/alerts/${alertId}/playback`);
    assert.equal(o.status, 200, o.text);
    assert.deepEqual(o.json.tracks, r.json.tracks, "the other instance's tracks");
    for (const k of instances) {
      const p = await k.api('police', 'GET', `/api/v1/alerts/${alertId}/playback`);
      assert.equal(p.status, 403, `police playback on ${k.instance}: ${p.status} ${p.text}`);
    }
  });

  test("the other instance's API answers the timeline the console's instance does", async () => {
    assert.ok(alertId, 'an alert from the previous steps');
    // Whichever serves the case's shard, the other reads its journal over NATS.
    const owners = [];
    for (const k of instances) if ((await k.shards()).includes(CASE_SHARD)) owners.push(k.instance);
    assert.equal(owners.length, 1, `one instance serves shard ${CASE_SHARD}: ${owners}`);
    console.log(`# the case's shard ${CASE_SHARD} is served by ${owners[0]}${owners[0] === console_.instance ? " (the console's)" : ''}`);
    // `seq` is a record's place in one journal: it differs between instances.
    const read = async (k) => {
      const r = await k.api('monitoring', 'GET', `/api/v1/cases/${CASE}/timeline`);
      assert.equal(r.status, 200, `${k.instance}: ${r.text}`);
      assert.equal(r.headers.get('kordon-instances-unanswered'), null, `${k.instance}: every journal answered`);
      return r.json.map(({ seq, ...item }) => item);
    };
    const [mine, theirs] = await Promise.all([read(console_), read(other)]);
    assert.deepEqual(theirs, mine);
    const ofAlert = mine.filter((i) => i.alert === alertId);
    const acks = ofAlert.filter((i) => i.kind === 'ack');
    assert.equal(acks.length, 1, JSON.stringify(mine));
    assert.equal(acks[0].text, ACK_NOTE);
    assert.equal(acks[0].operator, 'demo monitoring room');
    const opened = ofAlert.filter((i) => i.kind === 'alert' && i.phase === 'opened');
    assert.equal(opened.length, 1, JSON.stringify(mine));
    assert.ok(ofAlert.some((i) => i.kind === 'alert' && i.alert_kind === 'proximity_breach'), JSON.stringify(mine));
    assert.ok(mine.some((i) => i.kind === 'case_put'), 'the case put is on the timeline');
    console.log(`# timeline: ${mine.map((i) => i.kind + (i.phase ? `/${i.phase}` : '') + (i.alert_kind ? `/${i.alert_kind}` : '')).join(', ')}`);
  });

  test('no page errors, and nothing the page asked for refused', () => {
    assert.deepEqual(browser.errors, []);
    assert.deepEqual(refused, []);
  });
});
