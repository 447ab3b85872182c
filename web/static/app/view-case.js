// #/case/{id}: the case summary, its orders with validity and weekly
// schedules, a map of its zones, a 14-day strip and the timeline.
import { t } from './i18n.js';
import { get, enc } from './api.js';
import { store, on, getCase } from './store.js';
import { h, clear, now as nowMs, ms, fmtFull, fmtDate, fmtDay, fmtDayShort, fmtDateTime, fmtMetres, fmtDuration, level, kindLabel, localDay, KINDS, dispositionLabel } from './util.js';
import { createMap, drawZones, boundsOf } from './map.js';

const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

/** "Mon–Thu, Sat" from a list of day codes. */
export function dayRanges(days) {
  const set = new Set((days || []).map((d) => String(d).toLowerCase().slice(0, 3)));
  if (set.size === 7) return t('schedule.every_day');
  const idx = DAYS.map((d) => set.has(d));
  // Start where a run begins, so that Sun–Thu reads as one run.
  let start = idx.findIndex((v, i) => v && !idx[(i + 6) % 7]);
  if (start < 0) return '';
  const runs = [];
  let prevOn = false;
  for (let k = 0; k < 7; k++) {
    const i = (start + k) % 7;
    if (idx[i] && prevOn) runs[runs.length - 1].end = i;
    else if (idx[i]) runs.push({ start: i, end: i });
    prevOn = idx[i];
  }
  return runs.map((r) => {
    const a = t('day.' + DAYS[r.start]), b = t('day.' + DAYS[r.end]);
    if (r.start === r.end) return a;
    if ((r.start + 1) % 7 === r.end) return `${a}, ${b}`;
    return `${a}–${b}`;
  }).join(', ');
}

export function scheduleText(schedule) {
  if (!schedule || !Array.isArray(schedule.windows) || !schedule.windows.length) return t('schedule.always');
  return schedule.windows.map((w) => {
    const overnight = String(w.end) <= String(w.start);
    return t(overnight ? 'schedule.window_overnight' : 'schedule.window', { days: dayRanges(w.days), start: String(w.start).slice(0, 5), end: String(w.end).slice(0, 5) });
  }).join('; ');
}

function validity(order) {
  const now = nowMs();
  const from = ms(order.valid_from), until = ms(order.valid_until);
  if (from > now) return 'future';
  if (until <= now) return 'expired';
  return 'active';
}

function ruleDetails(rule) {
  const parts = [];
  const g = rule.geometry;
  if (g && g.type === 'Point') parts.push(t('order.circle', { r: fmtMetres(g.radius_m) }));
  else if (g && g.type) parts.push(t('order.shape.' + g.type, null, g.type));
  if (rule.warning_buffer_m) parts.push(t('order.buffer', { m: fmtMetres(rule.warning_buffer_m) }));
  if (rule.grace_s !== undefined) parts.push(t('order.grace', { d: fmtDuration(rule.grace_s) }));
  if (rule.type === 'contact_ban') parts.push(t('order.contact', { p: rule.protected, w: fmtMetres(rule.warning_radius_m), a: fmtMetres(rule.alarm_radius_m) }));
  if (rule.around) parts.push(t('order.around', { p: rule.around }));
  if (rule.bracelet_warnings !== undefined) parts.push(t(rule.bracelet_warnings ? 'order.bracelet_on' : 'order.bracelet_off'));
  return parts.join(' · ');
}

/** The alert kind an item of the timeline is about, if any. */
function itemAlertKind(item) {
  if (item.alert && typeof item.alert === 'object' && item.alert.kind) return item.alert.kind;
  if (item.alert_kind) return item.alert_kind;
  if (KINDS.includes(item.kind)) return item.kind;
  if (item.event && typeof item.event === 'object' && item.event.kind) return item.event.kind;
  return null;
}
function itemAlertId(item) {
  if (typeof item.alert === 'string') return item.alert;
  if (item.alert && typeof item.alert === 'object') return item.alert.id;
  return item.alert_id || null;
}

const RANK = { breach: 3, warning: 2, health: 1 };

export function mount(container, route) {
  let id = route.arg;
  const role = store.session.role;
  const root = h('div.case-page');
  container.append(root);
  let map = null;
  let timeline = null;
  let kindFilter = '';
  let alive = true;

  async function load(fresh) {
    clear(root).append(h('div.muted', t('common.loading')));
    let caseFile;
    try {
      caseFile = await getCase(id, fresh);
    } catch (e) {
      clear(root).append(h('div.empty', e.missing ? t('case.not_found', { id }) : t('error.generic', { error: e.message })));
      return;
    }
    if (!alive) return;
    render(caseFile);
    loadTimeline();
  }

  async function loadTimeline() {
    try {
      timeline = await get(`/api/v1/cases/${enc(id)}/timeline`);
      if (!Array.isArray(timeline)) timeline = timeline && (timeline.items || timeline.events) || [];
      timeline.unavailable = false;
    } catch (e) {
      timeline = [];
      timeline.unavailable = e.missing ? 'missing' : e.message;
    }
    if (alive) renderTimeline();
  }

  let stripEl, listEl, timelineNote;

  function render(c) {
    if (map) {
      map.remove();
      map = null;
    }
    const mapEl = h('div.map.case-map', { testid: 'case-map' });
    const summary = h('section.card.case-summary',
      h('h2', t('case.title', { id: c.id }), ' ', h('span.badge.risk.risk-' + c.risk, t('risk.' + c.risk))),
      h('dl.facts',
        h('dt', t('case.offender_device')), h('dd.mono', c.offender && c.offender.device),
        h('dt', t('case.protected')), h('dd', (c.protected || []).length
          ? h('ul.plain', (c.protected || []).map((p) => h('li', h('span.mono', p.id), ' · ', p.device ? h('span.mono', p.device) : h('span.muted', t('case.no_device')))))
          : h('span.muted', t('case.none'))),
        h('dt', t('case.coordinators')), h('dd', (c.coordinators || []).length
          ? h('ul.plain', (c.coordinators || []).map((k) => h('li', h('strong', k.name), ' — ', k.organisation,
            k.phone ? [' · ', h('a', { href: 'tel:' + k.phone.replace(/\s+/g, '') }, k.phone)] : null,
            k.email ? [' · ', h('a', { href: 'mailto:' + k.email }, k.email)] : null)))
          : h('span.muted', t('case.none')))));
    const orders = h('section.card',
      h('h3', t('case.orders')),
      h('div.table-wrap', h('table.table',
        h('thead', h('tr', ...['order.id', 'order.type', 'order.validity', 'order.schedule', 'order.details', 'order.legal_basis'].map((k) => h('th', t(k))))),
        h('tbody', (c.orders || []).map((o) => {
          const v = validity(o);
          const rule = o.rule || {};
          return h('tr', { class: 'validity-' + v, dataset: { order: o.id } },
            h('td.mono', o.id),
            h('td', h('span.zone-key.key-' + rule.type), t('rule.' + rule.type, null, rule.type)),
            h('td', h('span.badge.validity.' + v, t('validity.' + v)), h('div.small', t('order.from_until', { from: fmtDate(o.valid_from), until: o.valid_until ? fmtDate(o.valid_until) : t('order.open_ended') }))),
            h('td', rule.type === 'contact_ban' ? t('schedule.always') : scheduleText(rule.schedule)),
            h('td.small', ruleDetails(rule)),
            h('td.small.muted', o.legal_basis));
        })))));
    stripEl = h('div.day-strip', { testid: 'day-strip', role: 'img' });
    listEl = h('ol.timeline', { testid: 'timeline' });
    timelineNote = h('div.muted');
    const kindSelect = h('select.small', { 'aria-label': t('timeline.filter'), onchange: (e) => { kindFilter = e.target.value; renderTimeline(); } },
      h('option', { value: '' }, t('timeline.all')),
      ['alert', 'acknowledgement', 'note', 'resolution', 'escalation', 'case', 'health'].map((k) => h('option', { value: k }, t('timeline.group.' + k))));
    const history = h('section.card.case-history',
      h('div.section-head', h('h3', t('case.timeline')), kindSelect),
      h('div.strip-caption.muted', t('case.strip_caption')),
      stripEl,
      h('div.legend', h('span.key.key-breach', t('level.breach')), h('span.key.key-warning', t('level.warning')), h('span.key.key-health', t('level.health')), h('span.key.key-none', t('case.strip_none'))),
      timelineNote, listEl);
    clear(root).append(h('div.case-grid', h('div.case-left', summary, orders, history), h('div.case-right', h('section.card.map-card', h('h3', t('case.zones')), mapEl, zoneLegend()))));
    map = createMap(mapEl, { zoom: 12 });
    const layers = drawZones(L.layerGroup().addTo(map), c, null);
    const b = boundsOf(layers);
    setTimeout(() => {
      if (!map) return;
      map.invalidateSize();
      if (b) map.fitBounds(b.pad(0.3), { maxZoom: 16, animate: false });
    }, 0);
    renderTimeline();
  }

  function isAlertItem(item) {
    const k = String(item.kind || '');
    return k === 'alert' || (!!itemAlertKind(item) && !/ack|note|resol|escal|case/.test(k));
  }

  function groupOf(item) {
    const k = String(item.kind || '');
    if (isAlertItem(item)) return level(itemAlertKind(item)) === 'health' ? 'health' : 'alert';
    if (/ack/.test(k)) return 'acknowledgement';
    if (/note/.test(k)) return 'note';
    if (/resol|dispos/.test(k)) return 'resolution';
    if (/escal/.test(k)) return 'escalation';
    if (/case|order/.test(k)) return 'case';
    return 'alert';
  }

  function renderTimeline() {
    if (!stripEl) return;
    const items = Array.isArray(timeline) ? timeline : [];
    // The strip: one cell per day of the last 14, coloured by the worst alert.
    const days = [];
    const today = nowMs();
    for (let i = 13; i >= 0; i--) {
      const d = today - i * 86400000;
      days.push({ key: localDay(d), at: d, worst: 0, count: 0, kinds: new Map() });
    }
    const byKey = new Map(days.map((d) => [d.key, d]));
    const counted = new Set();
    const count = (at, kind, alertId) => {
      const day = byKey.get(localDay(at));
      if (!day || !kind) return;
      const key = (alertId || '') + '|' + day.key;
      if (alertId && counted.has(key)) return;
      counted.add(key);
      day.count++;
      day.worst = Math.max(day.worst, RANK[level(kind)] || 0);
      day.kinds.set(kind, (day.kinds.get(kind) || 0) + 1);
    };
    for (const item of items) {
      const kind = itemAlertKind(item);
      if (kind && isAlertItem(item)) count(ms(item.at), kind, itemAlertId(item));
    }
    for (const a of store.alerts.values()) if (a.case === id) count(ms(a.raised_at || a.onset), a.kind, a.id);
    const names = { 3: 'breach', 2: 'warning', 1: 'health', 0: 'none' };
    stripEl.setAttribute('aria-label', t('case.strip_caption'));
    clear(stripEl).append(...days.map((d) => {
      const title = `${fmtDay(d.at)}: ` + (d.count ? [...d.kinds].map(([k, n]) => `${n}× ${kindLabel(k)}`).join(', ') : t('case.strip_none'));
      return h('div.day', { class: 'worst-' + names[d.worst], title, dataset: { day: d.key, worst: names[d.worst], count: String(d.count) } },
        h('span.day-count', d.count ? String(d.count) : ''), h('span.day-label', fmtDayShort(d.at)));
    }));
    timelineNote.textContent = items.unavailable === 'missing' ? t('timeline.unavailable') : items.unavailable ? t('error.generic', { error: items.unavailable }) : items.length ? '' : t('timeline.empty');
    const shown = items.filter((i) => !kindFilter || groupOf(i) === kindFilter).slice(0, 500);
    clear(listEl).append(...shown.map((item) => {
      const akind = itemAlertKind(item);
      const alertId = itemAlertId(item);
      const lvl = akind ? level(akind) : 'none';
      const text = item.text || item.note || item.message || item.summary || '';
      const disposition = item.disposition || (item.resolution && item.resolution.disposition);
      return h('li.timeline-item', { testid: 'timeline-item', dataset: { kind: item.kind || '', group: groupOf(item), level: lvl } },
        h('span.when.mono', fmtDateTime(item.at)),
        h('span.what',
          h('strong', t('timeline.kind.' + item.kind, null, String(item.kind || '').replace(/_/g, ' '))),
          item.phase ? ' (' + t('timeline.phase.' + item.phase, null, item.phase) + ')' : '',
          akind && akind !== item.kind ? ' · ' + kindLabel(akind) : '',
          item.certainty === 'possible' ? ' · ' + t('certainty.possible') : '',
          Number.isFinite(item.distance_m) ? ' · ' + fmtMetres(item.distance_m) : '',
          item.operator ? ' · ' + item.operator : '',
          disposition ? ' · ' + dispositionLabel(disposition) : '',
          text ? h('span.text', ' — ' + text) : '',
          alertId && role === 'monitoring' ? [' ', h('a.small', { href: '#/alert/' + enc(alertId) }, t('timeline.open_alert'))] : null));
    }));
  }

  function zoneLegend() {
    return h('div.legend', h('span.key.key-exclusion', t('rule.exclusion_zone')), h('span.key.key-inclusion', t('rule.inclusion_zone')), h('span.key.key-buffer', t('map.buffer')));
  }

  const offs = [
    on('case', (caseId) => {
      if (caseId === id) load(true);
    }),
    on('reset', () => load(true)),
    on('alert', (rec) => {
      if (rec.case === id && timeline) scheduleTimeline();
    }),
  ];
  let timelineTimer = null;
  function scheduleTimeline() {
    clearTimeout(timelineTimer);
    timelineTimer = setTimeout(loadTimeline, 1500);
  }

  load(false);
  return {
    update(r) {
      if (r.arg !== id) {
        id = r.arg;
        load(false);
      }
    },
    unmount() {
      alive = false;
      clearTimeout(timelineTimer);
      offs.forEach((o) => o());
      if (map) map.remove();
    },
  };
}

const L = window.L;
