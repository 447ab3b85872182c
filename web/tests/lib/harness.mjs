// What every browser test needs: a real kordon process of its own (embedded
// broker, HTTP on free ports, cases and journal in a temp dir), devices that
// publish fixes over MQTT, headless Chromium with a fresh profile, sign-in,
// polling, screenshots.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '..', '..', '..');
export const KORDON = process.env.KORDON_BIN || path.join(REPO, 'target', 'release', 'kordon');
export const CHROMIUM = process.env.KORDON_CHROMIUM || '/usr/bin/chromium';

/** The demo tokens of config/kordon.toml (README), with their SHA-256. */
export const TOKENS = {
  monitoring: { token: 'monitoring-demo-token', name: 'demo monitoring room', sha256: 'f867dad95b04b4672eff2f8170d06334646fbcfab4ee5ab467f6381f9b5bf39e' },
  police: { token: 'police-demo-token', name: 'demo police dispatch', sha256: 'fa8cc18f7af2c93c21f3049ad34bc6c5e10306f7e29297dd933cd60040281ff2' },
  admin: { token: 'admin-demo-token', name: 'demo case administrator', sha256: '9c588b0babd6a996be956ccc040751f16fb7f1c2cef21d40b265621d37b0a8bc' },
};

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A port nobody listens on right now (bind 0, read it, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Polls `fn` until it returns something truthy; fails with `message` after `timeout` ms. */
export async function waitFor(fn, { timeout = 10000, interval = 100, message = 'condition' } = {}) {
  const start = Date.now();
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() - start > timeout) {
      throw new Error(`timed out after ${timeout} ms waiting for ${message}${last ? ` (last error: ${last.message})` : ''}`);
    }
    await sleep(interval);
  }
}

export function tempDir(name) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `kordon-web-${name}-`));
}

// ---- geography -------------------------------------------------------------------

/** The point `north` and `east` metres from (lat, lon). */
export function offset({ lat, lon }, north, east) {
  return {
    lat: +(lat + north / 111320).toFixed(6),
    lon: +(lon + east / (111320 * Math.cos((lat * Math.PI) / 180))).toFixed(6),
  };
}

export function distanceM(a, b) {
  const R = 6371008.8;
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad, dLon = (b.lon - a.lon) * rad;
  const s = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * R * Math.asin(Math.sqrt(s));
}

/** A closed square ring (GeoJSON [lon, lat]) of half-side `half` metres around `c`. */
export function squareRing(c, half) {
  const sw = offset(c, -half, -half), ne = offset(c, half, half);
  return [[sw.lon, sw.lat], [ne.lon, sw.lat], [ne.lon, ne.lat], [sw.lon, ne.lat], [sw.lon, sw.lat]];
}

/**
 * A case file like config/cases/rtm-2026-0117.json: a contact ban
 * (warning 1000 m, alarm 300 m) and an exclusion zone (a square polygon of
 * `homeHalf` m, 250 m warning buffer) around her home.
 */
export function makeCase({ id, offender, victim, home, homeHalf = 150, risk = 'high' }) {
  return {
    id,
    risk,
    offender: { device: offender },
    protected: [{ id: 'P1', device: victim }],
    coordinators: [
      { organisation: 'Reclassering Nederland, unit Rotterdam', name: 'T. Tester', phone: '+31 10 000 0000' },
      { organisation: 'Politie Eenheid Rotterdam', name: 'Wijkagent Test', email: 'test@example.invalid' },
    ],
    orders: [
      {
        id: 'ban-home',
        legal_basis: 'art. 38v Sr (gebiedsverbod), test',
        valid_from: '2026-01-01T00:00:00+01:00',
        valid_until: '2030-01-01T00:00:00+01:00',
        rule: { type: 'exclusion_zone', around: 'P1', warning_buffer_m: 250, geometry: { type: 'Polygon', coordinates: [squareRing(home, homeHalf)] } },
      },
      {
        id: 'contact-ban-p1',
        legal_basis: 'art. 38v Sr (contactverbod), test',
        valid_from: '2026-01-01T00:00:00+01:00',
        valid_until: '2030-01-01T00:00:00+01:00',
        rule: { type: 'contact_ban', protected: 'P1', warning_radius_m: 1000, alarm_radius_m: 300 },
      },
    ],
  };
}

// ---- kordon ------------------------------------------------------------------------

function configText({ httpPort, mqttPort, dir, extra = '' }) {
  const tokens = Object.entries(TOKENS).map(([role, t]) => `[[http.tokens]]\nname = "${t.name}"\nrole = "${role}"\nsha256 = "${t.sha256}"\n`).join('\n');
  return `# Written by web/tests for one browser test file.
[broker]
embedded = true
embedded_listen = "127.0.0.1:${mqttPort}"
client_id = "kordon-browser-test"

[http]
listen = "127.0.0.1:${httpPort}"

${tokens}
[cases]
dir = "${path.join(dir, 'cases')}"

[journal]
dir = "${path.join(dir, 'journal')}"
durability = "process"
${extra}`;
}

// A test file that dies mid-way must not leave its kordon running.
const running = new Set();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

/**
 * Starts `kordon run` with `cases` (case objects) in a temp dir; resolves
 * when /healthz answers 200 and kordon's MQTT subscriptions are in place.
 */
export async function startKordon({ name = 'test', cases = [], extraToml = '' } = {}) {
  if (!fs.existsSync(KORDON)) throw new Error(`${KORDON} is missing: cargo build -j2 --release --bin kordon`);
  const dir = tempDir(name);
  fs.mkdirSync(path.join(dir, 'cases'));
  for (const c of cases) fs.writeFileSync(path.join(dir, 'cases', `${c.id.toLowerCase()}.json`), JSON.stringify(c, null, 1));
  const [httpPort, mqttPort] = [await freePort(), await freePort()];
  const config = path.join(dir, 'kordon.toml');
  fs.writeFileSync(config, configText({ httpPort, mqttPort, dir, extra: extraToml }));
  const log = [];
  const proc = spawn(KORDON, ['run', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' } });
  const keep = (chunk) => {
    log.push(chunk.toString());
    if (log.length > 2000) log.splice(0, 1000);
  };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  let exited = null;
  const exit = new Promise((resolve) => proc.on('exit', (code, signal) => resolve((exited = { code, signal }))));
  running.add(proc);
  proc.on('exit', () => running.delete(proc));
  const k = {
    dir,
    config,
    proc,
    http: `http://127.0.0.1:${httpPort}`,
    mqttUrl: `mqtt://127.0.0.1:${mqttPort}`,
    log: () => log.join(''),
    /** The API as `role`, with its bearer token. */
    async api(role, method, p, body) {
      const headers = { Authorization: `Bearer ${TOKENS[role].token}`, Accept: 'application/json' };
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      const r = await fetch(k.http + p, { method, headers, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
      const text = await r.text();
      let json = null;
      try {
        json = text ? JSON.parse(text) : null;
      } catch {
        json = null;
      }
      return { status: r.status, text, json };
    },
    async stop() {
      if (!exited) {
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 10000);
        await exit;
        clearTimeout(timer);
      }
      if (!process.env.KORDON_KEEP_TMP) fs.rmSync(dir, { recursive: true, force: true });
      return exited;
    },
  };
  try {
    await waitFor(async () => {
      if (exited) throw new Error(`kordon exited (${JSON.stringify(exited)}):\n${k.log()}`);
      const r = await fetch(k.http + '/healthz').catch(() => null);
      return r && r.status === 200;
    }, { timeout: 30000, interval: 100, message: 'kordon /healthz 200' });
    // /healthz may answer before kordon subscribed: a fix of an unknown device
    // must come back on the rejects topic.
    const probe = await connectMqtt(k.mqttUrl, 'probe');
    try {
      const seen = new Promise((resolve) => probe.on('message', (topic, payload) => {
        if (topic === 'kordon/v1/rejects' && payload.toString().includes('PROBE-')) resolve();
      }));
      await probe.subscribeAsync('kordon/v1/rejects', { qos: 1 });
      let done = false;
      seen.then(() => (done = true));
      await waitFor(async () => {
        if (exited) throw new Error(`kordon exited:\n${k.log()}`);
        if (!done) await probe.publishAsync('kordon/v1/devices/PROBE-1/fix', JSON.stringify({ ts: Date.now(), lat: 51.9, lon: 4.5, acc: 5 }), { qos: 1 });
        await sleep(200);
        return done;
      }, { timeout: 20000, interval: 50, message: "kordon's MQTT subscriptions (a probe's reject)" });
    } finally {
      await probe.endAsync(true);
    }
  } catch (e) {
    await k.stop();
    throw e;
  }
  return k;
}

// ---- MQTT devices ----------------------------------------------------------------------

let clientSeq = 0;
export async function connectMqtt(url, name = 'test') {
  return mqtt.connectAsync(url, { clientId: `web-${name}-${process.pid}-${++clientSeq}`, clean: true, reconnectPeriod: 0, connectTimeout: 10000 });
}

/**
 * A device publishing fixes on its own clock: each fix is `dt` seconds after
 * the last (so that moves imply plausible speeds), stamped in the past
 * (`start` ms) and never ahead of the wall clock (it waits instead).
 */
export class Device {
  constructor(client, id, start) {
    this.client = client;
    this.id = id;
    this.ts = start;
    this.sent = [];
  }

  async fix({ lat, lon }, { dt = 2, acc = 5 } = {}) {
    this.ts += Math.round(dt * 1000);
    const ahead = this.ts - Date.now();
    if (ahead > 0) await sleep(ahead + 5);
    const payload = { ts: this.ts, lat, lon, acc };
    await this.client.publishAsync(`kordon/v1/devices/${this.id}/fix`, JSON.stringify(payload), { qos: 1 });
    this.sent.push(payload);
    return payload;
  }

  async status(body) {
    await this.client.publishAsync(`kordon/v1/devices/${this.id}/status`, JSON.stringify(body), { qos: 1 });
  }
}

/**
 * Points from `from` straight toward `to`, every `step` m, the last `stop` m
 * short of it, where he arrives: that point twice, standing. (At 50 m/s a
 * man still moving reads as passing by, and the police wait for a fix that
 * shows him stopped; see docs/mqtt.md, "Passing by".)
 */
export function approach(from, to, { step = 100, stop = 100 } = {}) {
  const total = distanceM(from, to);
  const points = [];
  for (let d = 0; d <= total - stop + 1e-6; d += step) {
    const f = d / total;
    points.push({ lat: +(from.lat + (to.lat - from.lat) * f).toFixed(6), lon: +(from.lon + (to.lon - from.lon) * f).toFixed(6) });
  }
  const f = (total - stop) / total;
  const last = { lat: +(from.lat + (to.lat - from.lat) * f).toFixed(6), lon: +(from.lon + (to.lon - from.lon) * f).toFixed(6) };
  if (distanceM(points[points.length - 1], last) > 1) points.push(last);
  points.push(last);
  return points;
}

/** Waits until kordon's latest position of `device` (monitoring API) has `ts`. */
export async function waitPosition(k, device, ts, timeout = 10000) {
  return waitFor(async () => {
    const r = await k.api('monitoring', 'GET', '/api/v1/positions');
    const p = (r.json || []).find((x) => x.device === device);
    return p && Date.parse(p.ts) >= ts && p;
  }, { timeout, message: `kordon to take ${device}'s fix of ${new Date(ts).toISOString()}` });
}

/** Waits until the monitoring API lists an alert matching `pred`. */
export async function waitAlert(k, pred, { timeout = 10000, message = 'an alert', role = 'monitoring' } = {}) {
  return waitFor(async () => {
    const r = await k.api(role, 'GET', '/api/v1/alerts');
    return (r.json || []).find(pred);
  }, { timeout, message });
}

// ---- the browser ---------------------------------------------------------------------------

export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Keeps every Leaflet map the page makes in window.__kordonMaps (to tap a place on it). */
const MAP_HOOK = `(() => {
  let leaflet;
  window.__kordonMaps = [];
  Object.defineProperty(window, 'L', {
    configurable: true,
    get() { return leaflet; },
    set(v) {
      leaflet = v;
      try { v.Map.addInitHook(function () { window.__kordonMaps.push(this); }); } catch (e) {}
    },
  });
})();`;

/**
 * Headless Chromium with a fresh profile of its own (removed on close); one
 * page, English, Amsterdam time. Page errors are collected in `errors`.
 */
export async function openBrowser({ viewport = { width: 1440, height: 900 }, mobile = false } = {}) {
  const profile = tempDir('chromium');
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport,
    deviceScaleFactor: 1,
    isMobile: mobile,
    hasTouch: mobile,
    locale: 'en-GB',
    timezoneId: 'Europe/Amsterdam',
  });
  await context.addInitScript(MAP_HOOK);
  context.setDefaultTimeout(10000);
  const page = context.pages()[0] || (await context.newPage());
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e && e.stack ? e.stack : e)));
  return {
    context,
    page,
    errors,
    async close() {
      await context.close().catch(() => {});
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

export const tid = (id) => `[data-testid="${id}"]`;

/** Signs in through the form; resolves when the role's home view shows. */
export async function signIn(page, base, role, hash = '') {
  await page.goto(base + '/' + hash);
  await page.locator(tid('signin-token')).fill(TOKENS[role].token);
  await page.locator(tid('signin-submit')).click();
  await page.locator(tid('signout')).waitFor();
}

// ---- screenshots -------------------------------------------------------------------------

/** Where screenshots go: KORDON_SCREENSHOTS (e.g. docs/img, relative to the repo) or a temp dir. */
export const SHOT_DIR = process.env.KORDON_SCREENSHOTS
  ? path.resolve(REPO, process.env.KORDON_SCREENSHOTS)
  : path.join(os.tmpdir(), 'kordon-web-screenshots');

export async function screenshot(page, name) {
  fs.mkdirSync(SHOT_DIR, { recursive: true });
  const file = path.join(SHOT_DIR, `${name}.png`);
  // The view, without the toasts of the last action (they fade after 5 s).
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  await page.screenshot({ path: file, animations: 'disabled', caret: 'hide', style: '.toasts { visibility: hidden !important; }' });
  const size = fs.statSync(file).size;
  if (size > 400 * 1024) throw new Error(`${file} is ${size} bytes; keep screenshots under ~400 KB`);
  return file;
}
