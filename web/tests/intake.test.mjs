// Case intake (admin): a pasted case file with three distinct problems
// shows each next to its field and line; a file that is not JSON, or not a
// case, shows its line; a broken case is not applied; a good one is.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as H from './lib/harness.mjs';

const { tid } = H;
const EXISTING = 'TST-2026-0401';
const NEW = 'TST-2026-0402';
const HOME = { lat: 51.909412, lon: 4.447183 };

/** A new case with three problems, one per order field. */
function brokenCase() {
  const c = H.makeCase({ id: NEW, offender: 'OFF-T402', victim: 'VIC-T402', home: HOME });
  const [zone, ban] = c.orders;
  // 1. The exclusion zone's ring is not closed (its last point dropped).
  zone.rule.geometry.coordinates[0].pop();
  // 2. The contact ban's validity ends before it starts.
  ban.valid_from = '2027-03-01T00:00:00+01:00';
  ban.valid_until = '2027-02-01T00:00:00+01:00';
  // 3. Its alarm radius is larger than its warning radius.
  ban.rule.alarm_radius_m = 1200;
  return c;
}

const EXPECTED = {
  'orders[0].rule.geometry.coordinates[0]': { order: 'ban-home', key: null },
  'orders[1].valid_until': { order: 'contact-ban-p1', key: '"valid_until"' },
  'orders[1].rule.alarm_radius_m': { order: 'contact-ban-p1', key: '"alarm_radius_m"' },
};

describe('case intake', { concurrency: false }, () => {
  let k, browser, page;

  before(async () => {
    k = await H.startKordon({ name: 'intake', cases: [H.makeCase({ id: EXISTING, offender: 'OFF-T401', victim: 'VIC-T401', home: HOME })] });
    browser = await H.openBrowser({ viewport: { width: 1440, height: 900 } });
    page = browser.page;
  });

  after(async () => {
    if (browser) await browser.close();
    if (k) await k.stop();
  });

  async function paste(text) {
    const editor = page.locator(tid('intake-editor'));
    await editor.fill(text);
    return editor;
  }

  async function errors() {
    return page.locator(tid('intake-error')).evaluateAll((els) => els.map((e) => ({ field: e.dataset.field, order: e.dataset.order || '', line: e.dataset.line, text: e.textContent })));
  }

  test('signs in as admin and lists the cases', async () => {
    await H.signIn(page, k.http, 'admin');
    await page.waitForURL(/#\/intake$/);
    await page.locator(`${tid('intake-cases')} a[data-case="${EXISTING}"]`).waitFor();
  });

  test('a case with three problems: three errors, each at its field and line', async () => {
    await page.locator(tid('intake-new')).click();
    const text = JSON.stringify(brokenCase(), null, 2);
    await paste(text);
    await page.locator(tid('intake-check')).click();
    await H.waitFor(async () => (await page.locator(tid('intake-error')).count()) >= 3, { timeout: 5000, message: 'three errors' });
    await page.waitForTimeout(200);
    const found = await errors();
    assert.equal(found.length, 3, `three errors: ${JSON.stringify(found, null, 1)}`);
    assert.deepEqual(found.map((e) => e.field).sort(), Object.keys(EXPECTED).sort());
    const lines = text.split('\n');
    for (const e of found) {
      const want = EXPECTED[e.field];
      assert.equal(e.order, want.order, `${e.field} names its order`);
      const line = Number(e.line);
      assert.ok(line >= 1 && line <= lines.length, `${e.field} has a line: ${e.line}`);
      if (want.key) assert.ok(lines[line - 1].includes(want.key), `${e.field} points at line ${line}: ${lines[line - 1]}`);
    }
    const ring = found.find((e) => e.field.endsWith('coordinates[0]'));
    assert.match(ring.text, /not closed/i);
    assert.match(found.find((e) => e.field.endsWith('valid_until')).text, /before/i);
    assert.match(found.find((e) => e.field.endsWith('alarm_radius_m')).text, /1[,.]?200|1\.2 km|larger|exceed/i);
    // Each problem is marked in the editor at its line.
    const marked = await page.locator('.editor-backdrop .line-mark.error').evaluateAll((els) => els.map((e) => e.dataset.line).sort());
    assert.deepEqual(marked, [...new Set(found.map((e) => e.line))].sort());
    assert.equal(await page.locator(tid('intake-status')).getAttribute('data-state'), 'error');
    await H.screenshot(page, 'dashboard-intake');
  });

  test('the broken case is refused on apply and not listed', async () => {
    await page.locator(tid('intake-apply')).click();
    await page.locator('.toast.error').waitFor({ timeout: 5000 });
    assert.equal((await errors()).length, 3, 'the same three errors');
    const cases = (await k.api('admin', 'GET', '/api/v1/cases')).json.map((c) => c.id);
    assert.deepEqual(cases, [EXISTING]);
    assert.equal(await page.locator(`${tid('intake-cases')} a[data-case="${NEW}"]`).count(), 0);
  });

  test('a file that is not JSON shows its line', async () => {
    // Line 4 lacks the comma after "high".
    const text = `{\n  "id": "${NEW}",\n  "risk": "high"\n  "offender": { "device": "OFF-T402" }\n}\n`;
    await paste(text);
    await page.locator(tid('intake-check')).click();
    const err = page.locator(tid('intake-error'));
    await H.waitFor(async () => (await err.count()) === 1 && (await err.getAttribute('data-line')) === '4', { timeout: 5000, message: 'one error at line 4' });
    assert.match(await err.innerText(), /line 4/i);
    assert.ok(await page.locator('.editor-backdrop .line-mark.error[data-line="4"]').count(), 'line 4 marked in the editor');
  });

  test('JSON that is not a case shows its line too', async () => {
    // Valid JSON, but "risk" is a number on line 3.
    const text = `{\n  "id": "${NEW}",\n  "risk": 7,\n  "offender": { "device": "OFF-T402" },\n  "protected": [],\n  "orders": []\n}\n`;
    await paste(text);
    await page.locator(tid('intake-check')).click();
    const err = page.locator(tid('intake-error'));
    await H.waitFor(async () => (await err.count()) === 1 && (await err.getAttribute('data-line')) === '3', { timeout: 5000, message: 'one error at line 3' });
    assert.match(await err.innerText(), /line 3/i);
  });

  test('a good case checks clean and applies', async () => {
    const good = H.makeCase({ id: NEW, offender: 'OFF-T402', victim: 'VIC-T402', home: HOME });
    await paste(JSON.stringify(good, null, 2));
    await page.locator(tid('intake-check')).click();
    await page.locator(tid('intake-ok')).waitFor({ timeout: 5000 });
    assert.equal(await page.locator(tid('intake-error')).count(), 0);
    await page.locator(tid('intake-apply')).click();
    await page.locator(`${tid('intake-cases')} a[data-case="${NEW}"]`).waitFor({ timeout: 5000 });
    const cases = (await k.api('admin', 'GET', '/api/v1/cases')).json.map((c) => c.id).sort();
    assert.deepEqual(cases, [EXISTING, NEW]);
  });

  test('no page errors', () => {
    assert.deepEqual(browser.errors, []);
  });
});
