// The dashboard of a two-instance cluster (docs/cluster.md, "The dashboard
// in a cluster", "The alert API in a cluster"): two `kordon run` processes
// with a [cluster] section on a nats-server (JetStream) and a Mosquitto of
// the test's own. A case put through one instance's case API runs on
// whichever instance serves its shard; a monitoring console signed in to
// the instance serving FEWER shards sees the offender's contact-ban breach
// in its queue, from fixes the devices publish to Mosquitto; its
// acknowledgement through the dashboard is then what the OTHER instance's
// alert API answers for that alert.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as H from './lib/harness.mjs';
import * as C from './lib/cluster.mjs';

const { tid } = H;
// A plain id: in a cluster it is a key of the cases' bucket.
const CASE = 'TST-2026-0301';
const OFF = 'OFF-T301';
const VIC = 'VIC-T301';
// Her home in Blijdorp; she is at home, a few metres from its centre.
const HOME = { lat: 51.927512, lon: 4.458842 };
const HER = H.offset(HOME, -12, 20);

describe('a two-instance cluster', { concurrency: false }, () => {
  let nats, mosquitto, mq, browser, page;
  let instances = [];
  let console_, other, alertId;
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
      if (r.status() >= 400) refused.push(`${r.status()} ${r.request().method()} ${r.url()}`);
    });
    page.on('requestfailed', (r) => {
      // A request the page itself gave up (a redraw, the stream on closing) is no refusal.
      const why = r.failure()?.errorText || '';
      if (!why.includes('ERR_ABORTED')) refused.push(`failed ${r.method()} ${r.url()}: ${why}`);
    });

    const t0 = Date.now() - 45000;
    const off = new H.Device(mq, OFF, t0), vic = new H.Device(mq, VIC, t0);
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

  test('no page errors, and nothing the page asked for refused', () => {
    assert.deepEqual(browser.errors, []);
    assert.deepEqual(refused, []);
  });
});
