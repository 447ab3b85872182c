// The dashboard under the demo's load (not part of run.sh; prints its figures):
//
//   node web/tests/perf.mjs [--pairs 1000] [--speed 10] [--minutes 3] [--frames-s 60]
//
// Starts `kordon demo` (1,000 pairs at 10× real time, embedded broker, HTTP),
// signs a headless Chromium in as the monitoring room (1920×1080), and for
// --minutes measures:
//  (a) alert → row: an alert's `opened` event as it arrives over MQTT on
//      kordon/v1/alerts/monitoring (time taken in Node), against the moment
//      its `alert-row` first appears in the queue (a MutationObserver in the
//      page, performance.timeOrigin + performance.now(): the same machine's
//      wall clock); n, p50, p95, max;
//  (b) the page's frame times with every device moving on the map:
//      requestAnimationFrame deltas over --frames-s seconds (p50, p95, p99,
//      share > 50 ms), and the positions the page received per second (in `positions` events).
// Target: alert → row p95 ≤ 1 s.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as H from './lib/harness.mjs';

const { values: opts } = parseArgs({
  options: {
    pairs: { type: 'string', default: '1000' },
    speed: { type: 'string', default: '10' },
    minutes: { type: 'string', default: '3' },
    'frames-s': { type: 'string', default: '60' },
    seed: { type: 'string', default: '1' },
  },
});
const MINUTES = Number(opts.minutes);
const FRAMES_S = Number(opts['frames-s']);

const quantile = (sorted, q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] : NaN);
const fmt = (v) => (Number.isFinite(v) ? v.toFixed(1) : '—');
const log = (...a) => console.error('[perf]', ...a);

// Counts the positions the live stream brings (each `positions` event a batch), and every alert row as it first appears.
const PAGE_HOOK = `(() => {
  const ES = window.EventSource;
  window.__positions = [];
  window.EventSource = class extends ES {
    constructor(...args) {
      super(...args);
      this.addEventListener('positions', (e) => {
        const at = performance.timeOrigin + performance.now();
        let n = 0;
        try { n = JSON.parse(e.data).length; } catch {}
        for (let i = 0; i < n; i++) window.__positions.push(at);
      });
    }
  };
  window.__rows = {};
  const seen = (el) => {
    if (el.nodeType !== 1) return;
    const rows = el.matches('[data-testid="alert-row"]') ? [el] : el.querySelectorAll('[data-testid="alert-row"]');
    const at = performance.timeOrigin + performance.now();
    for (const r of rows) {
      const id = r.dataset.alertId;
      if (id && !(id in window.__rows)) window.__rows[id] = at;
    }
  };
  new MutationObserver((records) => {
    for (const m of records) for (const n of m.addedNodes) seen(n);
  }).observe(document, { childList: true, subtree: true });
})();`;

async function main() {
  const [httpPort, mqttPort] = [await H.freePort(), await H.freePort()];
  const args = ['demo', '--pairs', opts.pairs, '--speed', opts.speed, '--seed', opts.seed, '--http', `127.0.0.1:${httpPort}`, '--mqtt', `127.0.0.1:${mqttPort}`];
  log(`${H.KORDON} ${args.join(' ')}`);
  const started = Date.now();
  const demo = spawn(H.KORDON, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  demo.stdout.on('data', (c) => (out += c));
  demo.stderr.on('data', (c) => {
    err += c;
    if (err.length > 100000) err = err.slice(-50000);
  });
  let exited = null;
  demo.on('exit', (code, signal) => (exited = { code, signal }));
  let browser, mq;
  try {
    const url = await H.waitFor(() => {
      if (exited) throw new Error(`kordon demo exited ${JSON.stringify(exited)}:\n${err}`);
      const m = out.match(/dashboard\s+(http:\/\/\S+)/);
      return m && m[1].replace(/\/$/, '');
    }, { timeout: 300000, interval: 200, message: "the demo's dashboard address" });
    log(`demo up after ${((Date.now() - started) / 1000).toFixed(0)} s: ${url}`);
    await H.waitFor(async () => (await fetch(url + '/healthz').catch(() => null))?.ok, { timeout: 60000, message: '/healthz' });

    // Every `opened` event as it reaches a subscriber.
    mq = await H.connectMqtt(`mqtt://127.0.0.1:${mqttPort}`, 'perf');
    const opened = new Map();
    let alertMessages = 0;
    mq.on('message', (topic, payload) => {
      const at = Date.now();
      alertMessages++;
      try {
        const a = JSON.parse(payload.toString());
        if (a.event === 'opened' && a.id && !opened.has(a.id)) opened.set(a.id, { at, kind: a.kind });
      } catch {
        // A fence or junk: not an alert.
      }
    });
    await mq.subscribeAsync('kordon/v1/alerts/monitoring', { qos: 1 });

    browser = await H.openBrowser({ viewport: { width: 1920, height: 1080 } });
    const { page } = browser;
    await page.addInitScript(PAGE_HOOK);
    await H.signIn(page, url, 'monitoring');
    await page.waitForURL(/#\/queue$/);
    await page.locator('[data-testid="map"]').waitFor();
    // Measure only alerts opened after the page is up and streaming.
    await H.waitFor(() => page.evaluate(() => window.__positions.length > 0), { timeout: 60000, message: 'live positions in the page' });
    const t0 = Date.now();
    for (const id of [...opened.keys()]) opened.delete(id);
    log(`measuring for ${MINUTES} min (frames for ${FRAMES_S} s from minute 1)`);

    const end = t0 + MINUTES * 60000;
    const frameStart = Math.min(t0 + 60000, end - FRAMES_S * 1000);
    let frames = null;
    let markers = 0;
    let lastLog = 0;
    while (Date.now() < end) {
      if (exited) throw new Error(`kordon demo exited ${JSON.stringify(exited)}`);
      if (!frames && Date.now() >= frameStart) {
        frames = page.evaluate((seconds) => new Promise((resolve) => {
          const deltas = [];
          const pos0 = window.__positions.length;
          const start = performance.now();
          let last = start;
          const tick = (t) => {
            deltas.push(t - last);
            last = t;
            if (t - start < seconds * 1000) requestAnimationFrame(tick);
            else resolve({ deltas: deltas.slice(1), seconds: (t - start) / 1000, positions: window.__positions.length - pos0 });
          };
          requestAnimationFrame((t) => {
            last = t;
            requestAnimationFrame(tick);
          });
        }), FRAMES_S);
      }
      await H.sleep(1000);
      if (Date.now() - lastLog > 15000) {
        lastLog = Date.now();
        const rows = await page.evaluate(() => Object.keys(window.__rows).length);
        markers = await page.locator('path[data-device]').count();
        log(`${((Date.now() - t0) / 1000).toFixed(0)} s: ${opened.size} opened over MQTT, ${rows} rows seen, ${markers} markers`);
      }
    }
    const frameResult = await frames;
    const rows = await page.evaluate(() => window.__rows);
    const positionsAll = await page.evaluate(() => window.__positions);
    markers = await page.locator('path[data-device]').count();
    const queueRows = await page.locator('[data-testid="alert-row"]').count();

    // (a) alert → row
    const lat = [];
    let missing = 0;
    for (const [id, o] of opened) {
      if (o.at > end - 5000) continue; // too late to be fair
      if (rows[id] === undefined) {
        missing++;
        continue;
      }
      lat.push(rows[id] - o.at);
    }
    lat.sort((a, b) => a - b);
    // (b) frames
    const d = [...frameResult.deltas].sort((a, b) => a - b);
    const over50 = d.filter((x) => x > 50).length;
    const posWindow = positionsAll.filter((x) => x >= t0 && x <= end);

    const report = [
      '',
      `kordon dashboard under load: kordon demo --pairs ${opts.pairs} --speed ${opts.speed} --seed ${opts.seed}; headless Chromium ${browser.context.browser()?.version() || ''} at 1920×1080; ${os.cpus().length} cores`,
      `window: ${MINUTES} min of measurement after sign-in (demo start to dashboard: ${((t0 - started) / 1000).toFixed(0)} s)`,
      '',
      '(a) alert published (MQTT opened, arrival in Node) → its row in the queue (MutationObserver):',
      `    n=${lat.length}  p50=${fmt(quantile(lat, 0.5))} ms  p95=${fmt(quantile(lat, 0.95))} ms  max=${fmt(lat[lat.length - 1])} ms  min=${fmt(lat[0])} ms`,
      `    opened over MQTT: ${opened.size} (${alertMessages} alert messages in all); without a row: ${missing}; rows in the queue at the end: ${queueRows}`,
      `    target p95 ≤ 1000 ms: ${quantile(lat, 0.95) <= 1000 ? 'met' : 'MISSED'}`,
      '',
      `(b) frames over ${frameResult.seconds.toFixed(1)} s with ${markers} device markers on the map:`,
      `    frames=${d.length} (${(d.length / frameResult.seconds).toFixed(1)} fps)  p50=${fmt(quantile(d, 0.5))} ms  p95=${fmt(quantile(d, 0.95))} ms  p99=${fmt(quantile(d, 0.99))} ms  max=${fmt(d[d.length - 1])} ms`,
      `    frames > 50 ms: ${over50} (${((100 * over50) / Math.max(1, d.length)).toFixed(2)} %)`,
      `    positions received: ${(frameResult.positions / frameResult.seconds).toFixed(0)}/s during the frame window, ${(posWindow.length / (MINUTES * 60)).toFixed(0)}/s over the whole window`,
      '',
    ].join('\n');
    console.log(report);
    if (browser.errors.length) console.log(`page errors:\n${browser.errors.join('\n')}`);
  } finally {
    if (browser) await browser.close();
    if (mq) await mq.endAsync(true).catch(() => {});
    if (!exited) {
      demo.kill('SIGINT');
      const t = setTimeout(() => demo.kill('SIGKILL'), 20000);
      await new Promise((r) => (exited ? r() : demo.on('exit', r)));
      clearTimeout(t);
    }
    // The demo's own temp dir (cases, journal).
    const files = out.match(/files\s+(\S+)/);
    if (files && path.basename(files[1]).startsWith('kordon-demo-') && files[1].startsWith(os.tmpdir())) fs.rmSync(files[1], { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
