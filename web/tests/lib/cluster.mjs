// What a browser test of a kordon cluster needs besides lib/harness.mjs: a
// nats-server with JetStream and a Mosquitto of its own (each on a free
// port, in a temp dir), and `kordon run` instances with a `[cluster]`
// section on them (docs/cluster.md, "Running a cluster"). Never the
// machine's own services on 1883/4222.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import * as H from './harness.mjs';

export const NATS_SERVER = process.env.NATS_SERVER || '/usr/sbin/nats-server';
export const MOSQUITTO = process.env.MOSQUITTO || '/usr/sbin/mosquitto';
/** The shards of the test's cluster (kordon's default, written out). */
export const SHARDS = 64;

// A test file that dies mid-way must not leave its servers running.
const running = new Set();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

/**
 * Spawns `cmd`, keeping its output (the last few hundred chunks) for
 * failure messages; `stop()` sends SIGTERM (SIGKILL after 10 s) and removes
 * `dir` unless KORDON_KEEP_TMP is set.
 */
function spawnKept(cmd, args, dir, env = process.env) {
  const log = [];
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
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
  return {
    proc,
    dir,
    log: () => log.join(''),
    exited: () => exited,
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
}

function listening(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

/** nats-server with JetStream (`-js -sd`); it picks its port and names it in its ports file. */
export async function startNats() {
  if (!fs.existsSync(NATS_SERVER)) throw new Error(`${NATS_SERVER} is missing (Debian's package nats-server)`);
  const dir = H.tempDir('nats');
  const ports = path.join(dir, 'ports');
  fs.mkdirSync(ports);
  const s = spawnKept(NATS_SERVER, ['-a', '127.0.0.1', '-p', '-1', '-js', '-sd', path.join(dir, 'store'), '--ports_file_dir', ports], dir);
  try {
    const port = await H.waitFor(() => {
      if (s.exited()) throw new Error(`nats-server exited (${JSON.stringify(s.exited())}):\n${s.log()}`);
      const [file] = fs.readdirSync(ports);
      if (!file) return null;
      const url = JSON.parse(fs.readFileSync(path.join(ports, file), 'utf8')).nats[0];
      return Number(url.split(':').pop());
    }, { timeout: 10000, interval: 50, message: 'nats-server to listen' });
    return { ...s, port, url: `nats://127.0.0.1:${port}` };
  } catch (e) {
    await s.stop();
    throw e;
  }
}

/** Mosquitto on a free port, anonymous, without persistence (another port if that one was taken). */
export async function startMosquitto() {
  if (!fs.existsSync(MOSQUITTO)) throw new Error(`${MOSQUITTO} is missing (Debian's package mosquitto)`);
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await H.freePort();
    const dir = H.tempDir('mosquitto');
    const config = path.join(dir, 'mosquitto.conf');
    fs.writeFileSync(config, `listener ${port} 127.0.0.1\nallow_anonymous true\nuser root\nmax_queued_messages 200000\n`);
    const s = spawnKept(MOSQUITTO, ['-c', config], dir);
    await H.waitFor(async () => s.exited() || (await listening(port)), { timeout: 10000, interval: 50, message: `mosquitto on ${port}` });
    await H.sleep(100); // what answered may be another broker on the port, this one about to exit
    if (!s.exited()) return { ...s, port, url: `mqtt://127.0.0.1:${port}` };
    await s.stop();
  }
  throw new Error('own mosquitto did not stay up on any of 5 ports');
}

function clusterConfig({ instance, httpPort, mqttUrl, natsUrl, dir }) {
  const tokens = Object.entries(H.TOKENS).map(([role, t]) => `[[http.tokens]]\nname = "${t.name}"\nrole = "${role}"\nsha256 = "${t.sha256}"\n`).join('\n');
  return `# Written by web/tests for one cluster instance.
[broker]
url = "${mqttUrl}"
embedded = false
client_id = "kordon-browser-test-${instance}"

[http]
listen = "127.0.0.1:${httpPort}"

${tokens}
[cases]
dir = "${path.join(dir, 'cases')}"

[journal]
dir = "${path.join(dir, 'journal')}"
durability = "process"

[cluster]
nats_url = "${natsUrl}"
instance = "${instance}"
shards = ${SHARDS}
`;
}

/** The API at `base` as `role`, with its bearer token (as harness.mjs's `k.api`). */
export async function api(base, role, method, p, body) {
  const headers = { Authorization: `Bearer ${H.TOKENS[role].token}`, Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(base + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  return { status: r.status, text, json, headers: r.headers };
}

/**
 * Starts `kordon run` as cluster instance `instance` on `nats` and
 * `mosquitto`. Resolves once its HTTP answers /healthz (200, or 503 while it
 * serves no shard yet); `shards()` reads the shards it serves from there.
 */
export async function startInstance({ instance, nats, mosquitto }) {
  if (!fs.existsSync(H.KORDON)) throw new Error(`${H.KORDON} is missing: cargo build -j2 --release --bin kordon`);
  const dir = H.tempDir(`cluster-${instance}`);
  fs.mkdirSync(path.join(dir, 'cases'));
  const httpPort = await H.freePort();
  const config = path.join(dir, 'kordon.toml');
  fs.writeFileSync(config, clusterConfig({ instance, httpPort, mqttUrl: mosquitto.url, natsUrl: nats.url, dir }));
  const s = spawnKept(H.KORDON, ['run', '--config', config], dir, { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' });
  const http = `http://127.0.0.1:${httpPort}`;
  const k = {
    ...s,
    instance,
    config,
    http,
    api: (role, method, p, body) => api(http, role, method, p, body),
    /** The shards it serves now, from /healthz (none while it is down). */
    async shards() {
      const r = await fetch(http + '/healthz').catch(() => null);
      if (!r) return [];
      const body = await r.json().catch(() => ({}));
      return (body.shards || []).map((x) => x.shard);
    },
  };
  try {
    await H.waitFor(async () => {
      if (s.exited()) throw new Error(`kordon ${instance} exited (${JSON.stringify(s.exited())}):\n${s.log()}`);
      const r = await fetch(http + '/healthz').catch(() => null);
      return r && (r.status === 200 || r.status === 503);
    }, { timeout: 30000, interval: 100, message: `kordon ${instance} /healthz` });
  } catch (e) {
    await s.stop();
    throw e;
  }
  return k;
}

const sha256Head = (bytes) => crypto.createHash('sha256').update(bytes).digest().readBigUInt64BE(0);

/** The shard a case belongs to (crates/cluster/src/shards.rs, `shard_of`). */
export function shardOf(caseId, shards = SHARDS) {
  return Number(sha256Head(Buffer.from(caseId)) % BigInt(shards));
}

/**
 * The shards each of `names` (instance ids) is the preferred owner of,
 * by rendezvous hashing as kordon ranks them (crates/cluster/src/shards.rs,
 * `rank` and `preferred`): the balance a cluster of them settles into.
 */
export function preferredShards(names, shards = SHARDS) {
  const mine = new Map(names.map((n) => [n, []]));
  for (let shard = 0; shard < shards; shard++) {
    const head = Buffer.alloc(2);
    head.writeUInt16BE(shard);
    let best = null;
    for (const name of names) {
      const rank = sha256Head(Buffer.concat([head, Buffer.from(name)]));
      if (!best || rank > best.rank || (rank === best.rank && name > best.name)) best = { rank, name };
    }
    mine.get(best.name).push(shard);
  }
  return mine;
}

/**
 * Waits until `instances` serve every shard between them, each exactly the
 * shards it is preferred for (`preferredShards`), with no shard changing
 * hands for `steady` ms; returns each one's shards. Until then shards are
 * still being handed over (an owner keeps a shard it has just taken for
 * two leases, 6 s, before it hands it to its preferred instance), and an
 * alert action on a shard changing hands is answered 503 "retry".
 */
export async function allServed(instances, { timeout = 45000, steady = 3000 } = {}) {
  const preferred = preferredShards(instances.map((k) => k.instance));
  const want = JSON.stringify(instances.map((k) => preferred.get(k.instance)));
  let last = null, since = 0;
  return H.waitFor(async () => {
    const served = await Promise.all(instances.map((k) => k.shards()));
    const key = JSON.stringify(served.map((s) => [...s].sort((a, b) => a - b)));
    const all = new Set(served.flat());
    if (all.size !== SHARDS || served.some((s) => s.length === 0) || key !== want) {
      last = null;
      return null;
    }
    if (key !== last) {
      last = key;
      since = Date.now();
      return null;
    }
    return Date.now() - since >= steady && served;
  }, { timeout, interval: 200, message: `${instances.length} instances to serve all ${SHARDS} shards, each its preferred ones, steadily` });
}
