// Small helpers shared by every view: DOM building, time, alert ordering, geodesy.
import { t, lang } from './i18n.js';

/** Builds an element: h('div.row', {dataset: {x: 1}, onclick}, child, 'text', ...). */
export function h(tag, props, ...children) {
  const [name, ...classes] = tag.split('.');
  const el = document.createElement(name || 'div');
  if (classes.length) el.className = classes.join(' ');
  if (props && (typeof props !== 'object' || props instanceof Node || Array.isArray(props))) {
    children.unshift(props);
    props = null;
  }
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'testid') el.dataset.testid = v;
    else if (k === 'class') el.className += (el.className ? ' ' : '') + v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else if (k === 'value' || k === 'checked' || k === 'disabled' || k === 'selected') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** Sets text only when it changed (keeps live timers cheap). */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

// The server's clock, as far as the browser can tell: alerts carry times the
// server stamped (raised_at, attention_since); a browser clock behind it (or
// a demo's simulated day running ahead) must not show negative waits.
let clockOffset = 0;
export function observeServerTime(ts) {
  const v = ms(ts);
  if (!Number.isFinite(v)) return;
  const ahead = v - Date.now();
  if (ahead > clockOffset && ahead < 7 * 86400000) clockOffset = ahead;
}
/** A time the server stamped just now (an alert raised live): both ways. */
export function syncServerTime(ts) {
  const v = ms(ts);
  if (Number.isFinite(v) && Math.abs(v - Date.now()) < 7 * 86400000) clockOffset = v - Date.now();
}
export function now() {
  return Date.now() + clockOffset;
}

export function ms(ts) {
  if (ts === undefined || ts === null) return NaN;
  if (typeof ts === 'number') return ts;
  return Date.parse(ts);
}

const TZ = 'Europe/Amsterdam';
const formatters = new Map();
function fmt(kind) {
  const key = kind + lang();
  if (!formatters.has(key)) {
    const locale = lang() === 'nl' ? 'nl-NL' : 'en-GB';
    const opts = {
      time: { hour: '2-digit', minute: '2-digit', second: '2-digit', timeZone: TZ },
      datetime: { day: '2-digit', month: 'short', hour: '2-digit', minute: '2-digit', timeZone: TZ },
      date: { day: 'numeric', month: 'short', year: 'numeric', timeZone: TZ },
      day: { weekday: 'short', day: 'numeric', month: 'short', timeZone: TZ },
      dayShort: { weekday: 'short', day: 'numeric', timeZone: TZ },
      full: { day: '2-digit', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', timeZone: TZ },
    }[kind];
    formatters.set(key, new Intl.DateTimeFormat(locale, opts));
  }
  return formatters.get(key);
}

export function fmtTime(ts) {
  const v = ms(ts);
  return Number.isFinite(v) ? fmt('time').format(v) : '—';
}
export function fmtDateTime(ts) {
  const v = ms(ts);
  if (!Number.isFinite(v)) return '—';
  // Today: the time is enough.
  const today = fmt('date').format(now()) === fmt('date').format(v);
  return today ? fmt('time').format(v) : fmt('datetime').format(v);
}
export function fmtFull(ts) {
  const v = ms(ts);
  return Number.isFinite(v) ? fmt('full').format(v) : '—';
}
export function fmtDate(ts) {
  const v = ms(ts);
  return Number.isFinite(v) ? fmt('date').format(v) : '—';
}
export function fmtDayShort(ts) {
  const v = ms(ts);
  return Number.isFinite(v) ? fmt('dayShort').format(v) : '—';
}
export function fmtDay(ts) {
  const v = ms(ts);
  return Number.isFinite(v) ? fmt('day').format(v) : '—';
}
/** The Europe/Amsterdam calendar day of a time, as YYYY-MM-DD. */
export function localDay(ts) {
  const key = 'ymd';
  if (!formatters.has(key)) formatters.set(key, new Intl.DateTimeFormat('en-CA', { year: 'numeric', month: '2-digit', day: '2-digit', timeZone: TZ }));
  return formatters.get(key).format(ms(ts));
}

/** A duration in seconds, short: 45s, 3m 05s, 2h 10m, 3d 4h. */
export function fmtDuration(seconds) {
  if (!Number.isFinite(seconds)) return '—';
  const neg = seconds < 0;
  let s = Math.floor(Math.abs(seconds));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hh = Math.floor(s / 3600); s -= hh * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  const pad = (n) => String(n).padStart(2, '0');
  let out;
  if (d) out = t('dur.dh', { d, h: hh });
  else if (hh) out = t('dur.hm', { h: hh, m: pad(m) });
  else if (m) out = t('dur.ms', { m, s: pad(s) });
  else out = t('dur.s', { s });
  return neg ? '−' + out : out;
}

export function fmtMetres(m) {
  if (m === undefined || m === null || !Number.isFinite(m)) return '—';
  if (Math.abs(m) >= 10000) return t('unit.km', { v: (m / 1000).toFixed(0) });
  if (Math.abs(m) >= 1000) return t('unit.km', { v: (m / 1000).toFixed(1) });
  return t('unit.m', { v: Math.round(m) });
}

// ---- alerts -------------------------------------------------------------

const BREACH = new Set(['proximity_breach', 'zone_breach', 'curfew_breach', 'tamper']);
const WARNING = new Set(['proximity_warning', 'zone_warning']);

/** breach (red), warning (amber) or health (blue-grey). */
export function level(kind) {
  if (BREACH.has(kind)) return 'breach';
  if (WARNING.has(kind)) return 'warning';
  return 'health';
}
const LEVEL_RANK = { breach: 0, warning: 1, health: 2 };
export const LEVELS = ['breach', 'warning', 'health'];
export const KINDS = ['proximity_breach', 'zone_breach', 'curfew_breach', 'tamper', 'proximity_warning', 'zone_warning',
  'position_unknown', 'battery_critical', 'battery_low', 'gps_lost', 'device_offline'];

/** unacknowledged, acknowledged, resolved or cleared. */
export function alertState(a) {
  if (a.resolution) return 'resolved';
  if (!a.open) return 'cleared';
  if (a.acknowledgement) return 'acknowledged';
  return 'unacknowledged';
}

/** Queue order: breach, warning, health; action before information; open before cleared; oldest first. */
export function compareAlerts(a, b) {
  const la = LEVEL_RANK[level(a.kind)], lb = LEVEL_RANK[level(b.kind)];
  if (la !== lb) return la - lb;
  const aa = a.attention === 'action' ? 0 : 1, ab = b.attention === 'action' ? 0 : 1;
  if (aa !== ab) return aa - ab;
  // An episode still going on before one that has ended but waits for its disposition.
  const oa = a.open ? 0 : 1, ob = b.open ? 0 : 1;
  if (oa !== ob) return oa - ob;
  const ta = ms(a.attention_since || a.raised_at || a.onset), tb = ms(b.attention_since || b.raised_at || b.onset);
  if (ta !== tb) return (ta || 0) - (tb || 0);
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** Whether an alert still asks the room for an acknowledgement. */
export function needsAck(a) {
  return a.open && !a.acknowledgement && !a.resolution && (a.attention === 'action' || a.needs_police);
}

export function kindLabel(kind) {
  return t('kind.' + kind, null, kind ? kind.replace(/_/g, ' ') : '—');
}

export function dispositionLabel(code) {
  return t('disposition.' + code, null, String(code).replace(/_/g, ' '));
}

// ---- geodesy ------------------------------------------------------------

const R = 6371008.8;
const rad = (d) => (d * Math.PI) / 180;
export function distanceM(a, b) {
  const dLat = rad(b.lat - a.lat), dLon = rad(b.lon - a.lon);
  const s = Math.sin(dLat / 2) ** 2 + Math.cos(rad(a.lat)) * Math.cos(rad(b.lat)) * Math.sin(dLon / 2) ** 2;
  return 2 * R * Math.asin(Math.min(1, Math.sqrt(s)));
}
/** Initial bearing from a to b, degrees clockwise from north. */
export function bearing(a, b) {
  const y = Math.sin(rad(b.lon - a.lon)) * Math.cos(rad(b.lat));
  const x = Math.cos(rad(a.lat)) * Math.sin(rad(b.lat)) - Math.sin(rad(a.lat)) * Math.cos(rad(b.lat)) * Math.cos(rad(b.lon - a.lon));
  return ((Math.atan2(y, x) * 180) / Math.PI + 360) % 360;
}

/** Runs fn once per animation frame at most, however often it is asked. */
export function frameBatch(fn) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      fn();
    });
  };
}

export function cssId(s) {
  return String(s).replace(/[^A-Za-z0-9_-]/g, '_');
}

export function debounce(fn, wait) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), wait);
  };
}
