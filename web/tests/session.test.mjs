// Sign-in, the session cookie and CSRF from a real browser: a wrong token
// is refused; the cookie is HttpOnly and SameSite=Strict; a POST from the
// page without X-Kordon-CSRF (or with a wrong one) is 403 and changes
// nothing, with it 200; sign-out shows the sign-in and the API says 401.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as H from './lib/harness.mjs';

const { tid } = H;
const CASE = 'TST-2026-0601';
const OFF = 'OFF-T601';
const VIC = 'VIC-T601';
const HOME = { lat: 51.926183, lon: 4.458817 };
const HER = H.offset(HOME, 700, -900);

describe('sign-in, session and CSRF', { concurrency: false }, () => {
  let k, mq, browser, page, alertId;

  before(async () => {
    k = await H.startKordon({ name: 'session', cases: [H.makeCase({ id: CASE, offender: OFF, victim: VIC, home: HOME })] });
    mq = await H.connectMqtt(k.mqttUrl, 'session');
    // One alert to act on: he is at her side.
    const t0 = Date.now() - 20000;
    const vic = new H.Device(mq, VIC, t0), off = new H.Device(mq, OFF, t0);
    const f = await vic.fix(HER);
    await H.waitPosition(k, VIC, f.ts);
    await off.fix(H.offset(HER, 40, 30));
    alertId = (await H.waitAlert(k, (a) => a.kind === 'proximity_breach', { message: 'a breach' })).id;
    browser = await H.openBrowser();
    page = browser.page;
  });

  after(async () => {
    if (browser) await browser.close();
    if (mq) await mq.endAsync(true);
    if (k) await k.stop();
  });

  /** A request from the page itself, with the session cookie. */
  function fromPage(method, path, body, headers = {}) {
    return page.evaluate(async ([method, path, body, headers]) => {
      const r = await fetch(path, { method, credentials: 'same-origin', headers: { 'Content-Type': 'application/json', ...headers }, body: body === null ? undefined : JSON.stringify(body) });
      return { status: r.status, body: await r.text() };
    }, [method, path, body, headers]);
  }

  test('a wrong token is refused at sign-in', async () => {
    await page.goto(k.http + '/');
    await page.locator(tid('signin-token')).fill('not-a-token');
    await page.locator(tid('signin-submit')).click();
    await H.waitFor(async () => (await page.locator(tid('signin-error')).innerText()).trim().length > 0, { message: 'the sign-in error' });
    assert.equal(await page.locator(tid('signout')).count(), 0, 'not signed in');
    assert.equal((await fromPage('GET', '/api/v1/alerts', null)).status, 401);
  });

  test('signing in sets an HttpOnly, SameSite=Strict session cookie the page cannot read', async () => {
    await page.locator(tid('signin-token')).fill(H.TOKENS.monitoring.token);
    await page.locator(tid('signin-submit')).click();
    await page.locator(tid('signout')).waitFor();
    const cookie = (await browser.context.cookies(k.http)).find((c) => c.name === 'kordon_session');
    assert.ok(cookie, 'a kordon_session cookie');
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Strict');
    assert.equal(cookie.path, '/');
    assert.ok(!(await page.evaluate(() => document.cookie)).includes('kordon_session'), 'invisible to scripts');
    const session = await fromPage('GET', '/api/v1/session', null);
    assert.equal(session.status, 200);
    assert.equal(JSON.parse(session.body).role, 'monitoring');
  });

  test('a POST from the page without X-Kordon-CSRF is refused 403 and changes nothing', async () => {
    const path = `/api/v1/alerts/${alertId}/notes`;
    const without = await fromPage('POST', path, { text: 'forged: no header' });
    assert.equal(without.status, 403, without.body);
    const wrong = await fromPage('POST', path, { text: 'forged: wrong header' }, { 'X-Kordon-CSRF': '0'.repeat(64) });
    assert.equal(wrong.status, 403, wrong.body);
    const ack = await fromPage('POST', `/api/v1/alerts/${alertId}/ack`, {});
    assert.equal(ack.status, 403, ack.body);
    let rec = (await k.api('monitoring', 'GET', `/api/v1/alerts/${alertId}`)).json;
    assert.deepEqual(rec.notes || [], [], 'no note taken');
    assert.equal(rec.acknowledgement, undefined, 'not acknowledged');
    // With the session's CSRF token the same request goes through.
    const csrf = JSON.parse((await fromPage('GET', '/api/v1/session', null)).body).csrf;
    assert.match(csrf, /^[0-9a-f]{32,}$/);
    const withIt = await fromPage('POST', path, { text: 'with the CSRF header' }, { 'X-Kordon-CSRF': csrf });
    assert.ok(withIt.status === 200 || withIt.status === 201, `${withIt.status} ${withIt.body}`);
    rec = (await k.api('monitoring', 'GET', `/api/v1/alerts/${alertId}`)).json;
    assert.deepEqual(rec.notes.map((n) => [n.operator, n.text]), [['demo monitoring room', 'with the CSRF header']]);
  });

  test('sign-out returns to the sign-in screen and the API answers 401', async () => {
    await page.locator(tid('signout')).click();
    await page.locator(tid('signin-token')).waitFor();
    assert.equal(await page.locator(tid('signout')).count(), 0);
    for (const p of ['/api/v1/session', '/api/v1/alerts', '/api/v1/positions', `/api/v1/cases/${CASE}`]) {
      assert.equal((await fromPage('GET', p, null)).status, 401, `GET ${p} after sign-out`);
    }
    // The old cookie is gone or dead: a reload shows the sign-in again.
    await page.reload();
    await page.locator(tid('signin-token')).waitFor();
    assert.equal(await page.locator(tid('signout')).count(), 0);
  });

  test('no page errors', () => {
    assert.deepEqual(browser.errors, []);
  });
});
