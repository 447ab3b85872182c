// #/report: per alert, the time to acknowledge, to resolve and the police's
// acknowledgement against their targets (misses in red), and the weekly
// share within target per partner. CSV download of the deadlines.
import { t } from './i18n.js';
import { get, qs, enc } from './api.js';
import { h, clear, now as nowMs, ms, fmtDuration, fmtDateTime, kindLabel, level } from './util.js';

// The report's fields (history/report.rs), with a few older spellings.
const METRICS = [
  { key: 'ack', value: ['acknowledged_s', 'time_to_ack_s'], met: ['acknowledged_in_time', 'ack_met'], target: ['acknowledge_s', 'ack_target_s'] },
  { key: 'resolve', value: ['resolved_s', 'time_to_resolve_s'], met: ['resolved_in_time', 'resolve_met'], target: ['resolve_s', 'resolve_target_s'] },
  { key: 'police_ack', value: ['police_acknowledged_s', 'time_to_police_ack_s'], met: ['police_in_time', 'police_ack_met'], target: ['police_acknowledge_s', 'police_ack_target_s'] },
];

function first(obj, keys) {
  for (const k of keys) if (obj && obj[k] !== undefined && obj[k] !== null) return obj[k];
  return undefined;
}

/** {value, target, met, pending} of one metric of a report row. */
export function metric(row, m, targets) {
  // The police's deadline applies to police alerts only.
  if (m.key === 'police_ack' && row.police === false) return { value: undefined, target: undefined, met: undefined, pending: false };
  const value = first(row, m.value);
  const target = first(row, m.target) ?? first(targets, m.target);
  let met = first(row, m.met);
  if (met === undefined && Number.isFinite(value) && Number.isFinite(target)) met = value <= target;
  // Not done yet and its target not yet passed: pending, not missed.
  const raised = ms(first(row, ['raised_at', 'raised', 'onset']));
  const pending = !Number.isFinite(value) && Number.isFinite(target) && nowMs() - raised < target * 1000;
  if (pending) met = undefined;
  return { value, target, met, pending };
}

function defaultRange() {
  const to = new Date();
  const from = new Date(to.getTime() - 7 * 86400000);
  const d = (x) => `${x.getFullYear()}-${String(x.getMonth() + 1).padStart(2, '0')}-${String(x.getDate()).padStart(2, '0')}`;
  return { from: d(from), to: d(to) };
}

function isoStart(day) {
  return day ? new Date(day + 'T00:00:00').toISOString() : undefined;
}
function isoEnd(day) {
  return day ? new Date(new Date(day + 'T00:00:00').getTime() + 86400000).toISOString() : undefined;
}

export function mount(container) {
  const range = defaultRange();
  const from = h('input', { type: 'date', value: range.from, testid: 'report-from', 'aria-label': t('report.from') });
  const to = h('input', { type: 'date', value: range.to, testid: 'report-to', 'aria-label': t('report.to') });
  const weeks = h('input', { type: 'number', min: 1, max: 52, value: 8, testid: 'report-weeks', 'aria-label': t('report.weeks'), class: 'narrow' });
  const csv = h('a.btn.small', { testid: 'report-csv', download: 'kordon-deadlines.csv' }, t('report.csv'));
  const complianceCsv = h('a.btn.small', { testid: 'compliance-csv', download: 'kordon-compliance.csv' }, t('report.csv'));
  const deadlines = h('div.table-wrap', { testid: 'report-deadlines' });
  const compliance = h('div.table-wrap', { testid: 'report-compliance' });
  const summary = h('div.report-summary');
  const refresh = h('button.btn.small.primary', { type: 'button', onclick: () => load() }, t('report.refresh'));
  container.append(h('div.report',
    h('section.card',
      h('div.section-head', h('h2', t('report.deadlines')), h('div.controls',
        h('label.inline', t('report.from'), from), h('label.inline', t('report.to'), to), refresh, csv)),
      summary, deadlines),
    h('section.card',
      h('div.section-head', h('h2', t('report.compliance')), h('div.controls', h('label.inline', t('report.weeks'), weeks), complianceCsv)),
      compliance)));

  function params() {
    return qs({ from: isoStart(from.value), to: isoEnd(to.value) });
  }

  async function load() {
    csv.href = '/api/v1/reports/deadlines.csv' + params();
    complianceCsv.href = '/api/v1/reports/compliance.csv' + qs({ weeks: weeks.value });
    clear(deadlines).append(h('div.muted', t('common.loading')));
    clear(compliance).append(h('div.muted', t('common.loading')));
    get('/api/v1/reports/deadlines' + params()).then(renderDeadlines, (e) => {
      clear(summary);
      clear(deadlines).append(h('div.empty.muted', e.missing ? t('report.unavailable') : t('error.generic', { error: e.message })));
    });
    get('/api/v1/reports/compliance' + qs({ weeks: weeks.value })).then(renderCompliance, (e) => {
      clear(compliance).append(h('div.empty.muted', e.missing ? t('report.unavailable') : t('error.generic', { error: e.message })));
    });
  }

  function cell(m) {
    if (!Number.isFinite(m.value)) {
      const missed = m.met === false;
      return h('td.metric', { class: missed ? 'miss' : 'none' }, missed ? t('report.missed') : m.pending ? t('report.pending') : '—',
        Number.isFinite(m.target) ? h('span.target', ' / ' + fmtDuration(m.target)) : null);
    }
    return h('td.metric', { class: m.met === false ? 'miss' : m.met === true ? 'met' : '' },
      fmtDuration(m.value), Number.isFinite(m.target) ? h('span.target', ' / ' + fmtDuration(m.target)) : null,
      m.met === false ? h('span.sr', ' ' + t('report.missed')) : null);
  }

  function renderDeadlines(data) {
    const rows = Array.isArray(data) ? data : (data && data.alerts) || [];
    const targets = data && !Array.isArray(data) ? data.targets : null;
    rows.sort((a, b) => ms(first(b, ['raised_at', 'raised', 'onset'])) - ms(first(a, ['raised_at', 'raised', 'onset'])));
    const totals = METRICS.map(() => ({ n: 0, miss: 0 }));
    const body = rows.map((r) => {
      const ms_ = METRICS.map((m) => metric(r, m, targets));
      ms_.forEach((m, i) => {
        if (m.met === undefined) return;
        totals[i].n++;
        if (m.met === false) totals[i].miss++;
      });
      const id = first(r, ['id', 'alert', 'alert_id']);
      const kind = first(r, ['kind', 'alert_kind']);
      return h('tr', { dataset: { alertId: id || '', severity: level(kind) }, class: ms_.some((m) => m.met === false) ? 'row-miss' : '' },
        h('td.mono', fmtDateTime(first(r, ['raised_at', 'raised', 'onset']))),
        h('td', r.case ? h('a', { href: '#/case/' + enc(r.case) }, r.case) : '—'),
        h('td', h('span.level-dot.' + level(kind)), kindLabel(kind)),
        ...ms_.map(cell),
        h('td', id ? h('a.small', { href: '#/alert/' + enc(id) }, t('report.open')) : ''));
    });
    clear(summary).append(...METRICS.map((m, i) => h('span.pill', { class: totals[i].miss ? 'miss' : '' },
      t('report.metric.' + m.key), ': ', totals[i].n ? t('report.summary', { met: totals[i].n - totals[i].miss, n: totals[i].n }) : '—')));
    clear(deadlines).append(rows.length ? h('table.table', { testid: 'deadline-table' },
      h('thead', h('tr', h('th', t('report.raised')), h('th', t('report.case')), h('th', t('report.kind')),
        ...METRICS.map((m) => h('th', t('report.metric.' + m.key))), h('th', ''))),
      h('tbody', body)) : h('div.empty.muted', t('report.no_alerts')));
  }

  function renderCompliance(data) {
    const rows = Array.isArray(data) ? data : (data && data.weeks) || [];
    if (!rows.length) {
      clear(compliance).append(h('div.empty.muted', t('report.no_weeks')));
      return;
    }
    const share = (r) => {
      let s = first(r, ['share_in_time', 'share', 'share_within_target']);
      if (s === undefined) {
        const n = first(r, ['alerts', 'total']), w = first(r, ['acknowledged_in_time', 'within']);
        if (Number.isFinite(n) && n > 0 && Number.isFinite(w)) s = w / n;
      }
      if (typeof s === 'number' && s > 1) s /= 100;
      return s;
    };
    const partner = (r) => first(r, ['partner', 'organisation', 'who', 'role']) ?? '—';
    const week = (r) => String(first(r, ['week', 'iso_week', 'period']) ?? '—');
    const counts = (r) => {
      const n = first(r, ['alerts', 'total']), w = first(r, ['acknowledged_in_time', 'within']);
      return Number.isFinite(n) ? `${Number.isFinite(w) ? w : '?'}/${n}` : '';
    };
    const partners = [...new Set(rows.map(partner))];
    const weeksList = [...new Set(rows.map(week))].sort();
    const grid = new Map(rows.map((r) => [partner(r) + '|' + week(r), r]));
    clear(compliance).append(h('table.table.compliance', { testid: 'compliance-table' },
      h('thead', h('tr', h('th', t('report.partner')), ...weeksList.map((w) => h('th.mono', w)))),
      h('tbody', partners.map((p) => h('tr', h('th', t('partner.' + p, null, p)), ...weeksList.map((w) => {
        const r = grid.get(p + '|' + w);
        if (!r) return h('td.none', '—');
        const s = share(r);
        const target = first(r, ['target_share', 'target']);
        const goal = typeof target === 'number' ? (target > 1 ? target / 100 : target) : 0.95;
        const cls = !Number.isFinite(s) ? 'none' : s >= goal ? 'met' : 'miss';
        return h('td.metric', { class: cls, title: counts(r) }, Number.isFinite(s) ? `${Math.round(s * 100)}%` : '—', h('span.target', counts(r) ? ' ' + counts(r) : ''));
      }))))));
  }

  weeks.addEventListener('change', load);
  from.addEventListener('change', load);
  to.addEventListener('change', load);
  load();
  return { unmount() {} };
}
