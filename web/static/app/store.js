// Live state shared by the views: alerts, device positions, engine health and
// the event stream. Views subscribe and batch their own DOM work.
import { get, ApiError } from './api.js';
import { ms, observeServerTime, syncServerTime } from './util.js';

export const store = {
  session: null,
  alerts: new Map(),
  positions: new Map(),
  /** previous position per device, for a direction of movement without heading */
  previous: new Map(),
  cases: new Map(),
  dispositions: null,
  health: null,
  healthError: null,
  stream: 'idle', // idle | open | lost
  alertsMissing: false,
};

const listeners = new Map();
export function on(event, fn) {
  if (!listeners.has(event)) listeners.set(event, new Set());
  listeners.get(event).add(fn);
  return () => listeners.get(event).delete(fn);
}
function emit(event, ...args) {
  const set = listeners.get(event);
  if (!set) return;
  for (const fn of [...set]) {
    try {
      fn(...args);
    } catch (e) {
      console.error(e);
    }
  }
}

// ---- alerts ---------------------------------------------------------------

function actionable(rec, prev) {
  const role = store.session && store.session.role;
  if (role !== 'monitoring' && role !== 'police') return false;
  if (!rec.open || rec.resolution) return false;
  if (store.session && store.session.role === 'police') {
    return !prev && !rec.police_acknowledgement;
  }
  if (rec.attention !== 'action' || rec.acknowledgement) return false;
  if (!prev) return true;
  if (prev.attention !== 'action') return true;
  return ms(rec.attention_since) > ms(prev.attention_since);
}

function observe(rec) {
  observeServerTime(rec.raised_at);
  observeServerTime(rec.attention_since);
}

function putAlert(rec, live) {
  if (!rec || !rec.id) return;
  // An alert raised live was stamped by the server's clock a moment ago
  // (in the demo, a simulated day's): the timers follow that clock.
  // Not in the burst a (re)connection replays: those may be minutes old.
  if (live && rec.event === 'opened' && !store.alerts.has(rec.id) && performance.now() - streamOpenedAt > 3000) syncServerTime(rec.raised_at);
  else observe(rec);
  const prev = store.alerts.get(rec.id);
  store.alerts.set(rec.id, rec);
  if (live && actionable(rec, prev)) emit('actionable', rec);
  emit('alert', rec, prev);
}

let alertsLoaded = false;
export async function loadAlerts() {
  try {
    const list = await get('/api/v1/alerts');
    store.alertsMissing = false;
    const seen = new Set();
    for (const rec of list || []) {
      seen.add(rec.id);
      observe(rec);
      const prev = store.alerts.get(rec.id);
      store.alerts.set(rec.id, rec);
      // After a gap (reconnect, reset, polling) what came to ask for action sounds too.
      if (alertsLoaded && actionable(rec, prev)) emit('actionable', rec);
    }
    alertsLoaded = true;
    for (const id of [...store.alerts.keys()]) if (!seen.has(id)) store.alerts.delete(id);
  } catch (e) {
    if (e instanceof ApiError && e.missing) store.alertsMissing = true;
    else if (!(e instanceof ApiError && e.status === 401)) throw e;
  }
  emit('alerts');
}

/** Fetches one alert again (after an action) and puts it in the store. */
export async function refreshAlert(id) {
  const rec = await get('/api/v1/alerts/' + encodeURIComponent(id));
  putAlert(rec, false);
  return rec;
}

// ---- positions ------------------------------------------------------------

function putPosition(p) {
  if (!p || !p.device) return;
  const prev = store.positions.get(p.device);
  if (prev && ms(prev.ts) >= ms(p.ts)) {
    if (ms(prev.ts) > ms(p.ts)) return;
  } else if (prev && (prev.lat !== p.lat || prev.lon !== p.lon)) {
    store.previous.set(p.device, prev);
  }
  store.positions.set(p.device, p);
  emit('position', p);
}

export async function loadPositions() {
  if (!store.session || store.session.role !== 'monitoring') return;
  try {
    const list = await get('/api/v1/positions');
    for (const p of list || []) putPosition(p);
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
  }
  emit('positions');
}

// ---- cases and dispositions -------------------------------------------------

const casePromises = new Map();
export function getCase(id, fresh) {
  if (fresh || !casePromises.has(id)) {
    const p = get('/api/v1/cases/' + encodeURIComponent(id)).then((c) => {
      store.cases.set(id, c);
      return c;
    });
    p.catch(() => casePromises.delete(id));
    casePromises.set(id, p);
  }
  return casePromises.get(id);
}

const FALLBACK_DISPOSITIONS = ['unit_dispatched', 'offender_contacted', 'victim_contacted_safe', 'gps_error', 'device_fault',
  'bracelet_checked', 'authorised_presence', 'duplicate', 'other'];
export async function dispositions() {
  if (store.dispositions) return store.dispositions;
  try {
    const list = await get('/api/v1/dispositions');
    store.dispositions = (list || []).map((d) => (typeof d === 'string' ? d : d.code || d.id));
  } catch (e) {
    // Not served yet: offer the documented list, the back end decides.
    return FALLBACK_DISPOSITIONS;
  }
  return store.dispositions;
}

// ---- refetch --------------------------------------------------------------

export async function refetchAll() {
  casePromises.clear();
  store.cases.clear();
  await Promise.all([loadAlerts(), loadPositions()]);
  emit('reset');
}

// ---- event stream -------------------------------------------------------------

let source = null;
let retryTimer = null;
let retryDelay = 2000;
let pollTimer = null;
let everOpened = false;
let streamOpenedAt = Infinity;

function setStream(state) {
  if (store.stream === state) return;
  store.stream = state;
  emit('stream', state);
  if (state === 'lost' && !pollTimer) {
    // While live updates are lost, keep the queue fresh by asking.
    pollTimer = setInterval(() => loadAlerts().catch(() => {}), 10000);
  } else if (state !== 'lost' && pollTimer) {
    clearInterval(pollTimer);
    pollTimer = null;
  }
}

function parse(e) {
  try {
    return JSON.parse(e.data);
  } catch {
    return null;
  }
}

export function startStream() {
  stopStream();
  const es = new EventSource('/api/v1/stream', { withCredentials: true });
  source = es;
  let resumed = false;
  es.onopen = () => {
    retryDelay = 2000;
    streamOpenedAt = performance.now();
    const wasLost = store.stream === 'lost';
    setStream('open');
    // A new EventSource cannot resume (no Last-Event-ID): refetch what it missed.
    if (everOpened && !resumed && wasLost) refetchAll().catch(() => {});
    everOpened = true;
    resumed = true;
  };
  es.onerror = () => {
    if (source !== es) return;
    setStream('lost');
    if (es.readyState === EventSource.CLOSED) {
      // The server refused the stream (404, 401, …): the browser gives up, so
      // try again ourselves, and check whether the session is still alive.
      es.close();
      source = null;
      resumed = false;
      get('/api/v1/session').catch(() => {});
      retryTimer = setTimeout(startStream, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 30000);
    }
    // CONNECTING: the browser reconnects by itself, sending Last-Event-ID.
  };
  es.addEventListener('alert', (e) => putAlert(parse(e), true));
  // Positions come in batches: all that moved since the last (each device
  // at most once a second).
  es.addEventListener('positions', (e) => {
    for (const p of parse(e) || []) putPosition(p);
  });
  es.addEventListener('case', (e) => {
    const body = parse(e);
    const id = body && body.case;
    if (id) {
      casePromises.delete(id);
      store.cases.delete(id);
    }
    emit('case', id);
  });
  es.addEventListener('health', (e) => {
    const body = parse(e);
    if (body) setHealth(body, null);
  });
  es.addEventListener('reset', () => {
    refetchAll().catch(() => {});
  });
}

export function stopStream() {
  clearTimeout(retryTimer);
  retryTimer = null;
  if (source) {
    source.close();
    source = null;
  }
  if (pollTimer) {
    clearInterval(pollTimer);
    pollTimer = null;
  }
  store.stream = 'idle';
  everOpened = false;
  emit('stream', 'idle');
}

// ---- engine health ----------------------------------------------------------

let healthTimer = null;
function setHealth(body, error) {
  store.health = body;
  store.healthError = error;
  emit('health');
}

async function pollHealth() {
  try {
    const response = await fetch('/healthz', { cache: 'no-store', credentials: 'same-origin' });
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!body) body = { status: response.ok ? 'ok' : 'degraded', problems: [] };
    if (!response.ok && body.status === 'ok') body.status = 'degraded';
    setHealth(body, response.ok || body.status ? null : `HTTP ${response.status}`);
  } catch (e) {
    setHealth(null, 'unreachable');
  }
}

export function startHealth() {
  if (healthTimer) return;
  pollHealth();
  healthTimer = setInterval(pollHealth, 5000);
}

export function resetStore() {
  stopStream();
  alertsLoaded = false;
  store.alerts.clear();
  store.positions.clear();
  store.previous.clear();
  store.cases.clear();
  casePromises.clear();
  store.dispositions = null;
}
