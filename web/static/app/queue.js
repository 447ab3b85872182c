// The alert queue: rows kept per alert id and updated in place; sorting and
// DOM changes batched per animation frame; live timers updated once a second.
import { t } from './i18n.js';
import { store, on } from './store.js';
import { h, clear, setText, now as nowMs, ms, fmtDuration, fmtMetres, fmtDateTime, level, alertState, compareAlerts, kindLabel, KINDS, frameBatch } from './util.js';

const filters = { case: '', kind: '', state: 'active', mine: false };

export class AlertQueue {
  constructor(container, { onSelect, police = false } = {}) {
    this.container = container;
    this.onSelect = onSelect;
    this.police = police;
    this.rows = new Map();
    this.dirty = new Set();
    this.all = true;
    this.selected = null;
    this.order = [];
    this.knownCases = '';
    this.schedule = frameBatch(() => this.flush());
    this.build();
    this.offs = [
      on('alert', (rec) => {
        this.dirty.add(rec.id);
        this.schedule();
      }),
      on('alerts', () => {
        this.all = true;
        this.schedule();
      }),
      on('reset', () => {
        this.all = true;
        this.schedule();
      }),
    ];
    this.timer = setInterval(() => this.tick(), 1000);
    this.schedule();
  }

  build() {
    const c = clear(this.container);
    this.caseSelect = h('select.small', { 'aria-label': t('queue.filter_case'), testid: 'filter-case', onchange: (e) => this.setFilter('case', e.target.value) });
    const kind = h('select.small', { 'aria-label': t('queue.filter_kind'), testid: 'filter-kind', onchange: (e) => this.setFilter('kind', e.target.value) },
      h('option', { value: '' }, t('queue.all_kinds')),
      KINDS.map((k) => h('option', { value: k, selected: filters.kind === k }, kindLabel(k))));
    const states = this.police ? ['active', 'unacknowledged', 'acknowledged', 'cleared', 'all'] : ['active', 'unacknowledged', 'acknowledged', 'resolved', 'cleared', 'all'];
    if (!states.includes(filters.state)) filters.state = 'active';
    const state = h('select.small', { 'aria-label': t('queue.filter_state'), testid: 'filter-state', onchange: (e) => this.setFilter('state', e.target.value) },
      states.map((s) => h('option', { value: s, selected: filters.state === s }, t('state_filter.' + s))));
    const mine = h('label.check', h('input', { type: 'checkbox', checked: filters.mine, testid: 'filter-mine', onchange: (e) => this.setFilter('mine', e.target.checked) }), t('queue.mine'));
    this.count = h('span.count.muted', { testid: 'queue-count' });
    this.list = h('div.queue-list', { role: 'listbox', 'aria-label': t('queue.title'), tabindex: '-1', onkeydown: (e) => this.key(e) });
    this.empty = h('div.empty.muted', { hidden: true });
    c.append(h('div.queue-filters', this.caseSelect, kind, state, this.police ? null : mine, this.count), this.list, this.empty);
    this.refreshCases();
  }

  setFilter(name, value) {
    filters[name] = value;
    this.all = true;
    this.schedule();
  }

  refreshCases() {
    const cases = [...new Set([...store.alerts.values()].map((a) => a.case).filter(Boolean))].sort();
    const key = cases.join('|');
    if (key === this.knownCases) return;
    this.knownCases = key;
    clear(this.caseSelect).append(h('option', { value: '' }, t('queue.all_cases')), cases.map((id) => h('option', { value: id, selected: filters.case === id }, id)));
    if (filters.case && !cases.includes(filters.case)) this.caseSelect.append(h('option', { value: filters.case, selected: true }, filters.case));
  }

  state(a) {
    if (this.police) {
      if (!a.open) return 'cleared';
      return a.police_acknowledgement ? 'acknowledged' : 'unacknowledged';
    }
    return alertState(a);
  }

  visible(a) {
    if (filters.case && a.case !== filters.case) return false;
    if (filters.kind && a.kind !== filters.kind) return false;
    if (filters.mine && !(a.acknowledgement && store.session && a.acknowledgement.operator === store.session.name)) return false;
    const s = this.state(a);
    switch (filters.state) {
      case 'all':
        return true;
      case 'active':
        if (this.police) return a.open || nowMs() - ms(a.ts) < 30 * 60 * 1000;
        return !a.resolution && (a.open || a.attention === 'action');
      default:
        return s === filters.state;
    }
  }

  flush() {
    const ids = this.all ? [...new Set([...this.rows.keys(), ...store.alerts.keys()])] : [...this.dirty];
    this.all = false;
    this.dirty.clear();
    for (const id of ids) {
      const a = store.alerts.get(id);
      const row = this.rows.get(id);
      if (!a || !this.visible(a)) {
        if (row) {
          row.el.remove();
          this.rows.delete(id);
        }
        continue;
      }
      if (row) this.fill(row, a);
      else this.rows.set(id, this.create(a));
    }
    // Reorder only when the order changed: moving nodes is the costly part.
    const sorted = [...this.rows.keys()].map((id) => store.alerts.get(id)).sort(compareAlerts).map((a) => a.id);
    let same = sorted.length === this.order.length && sorted.every((id, i) => id === this.order[i]);
    if (!same || this.list.children.length !== sorted.length) {
      const frag = document.createDocumentFragment();
      for (const id of sorted) frag.append(this.rows.get(id).el);
      this.list.append(frag);
      this.order = sorted;
    }
    this.refreshCases();
    const n = sorted.length;
    const actionable = sorted.filter((id) => {
      const a = store.alerts.get(id);
      return this.state(a) === 'unacknowledged' && a.attention === 'action' && a.open;
    }).length;
    setText(this.count, t('queue.count', { n, m: actionable }));
    this.empty.hidden = n > 0;
    setText(this.empty, store.alertsMissing ? t('queue.unavailable') : t('queue.empty'));
    this.tick();
  }

  create(a) {
    const el = h('div.alert-row', { role: 'option', tabindex: '0', testid: 'alert-row', onclick: () => this.select(a.id, true) });
    const cells = {
      kind: h('span.kind'),
      badges: h('span.badges'),
      where: h('span.where.muted'),
      since: h('span.timer.since', { title: t('queue.since_title') }),
      deadline: h('span.timer.deadline'),
    };
    el.append(h('span.stripe'), h('div.main', h('div.line1', cells.kind, cells.badges), cells.where), h('div.timers', cells.since, cells.deadline));
    const row = { el, cells, a };
    this.fill(row, a);
    return row;
  }

  fill(row, a) {
    row.a = a;
    const { el, cells } = row;
    const state = this.state(a);
    el.dataset.alertId = a.id;
    el.dataset.kind = a.kind;
    el.dataset.severity = level(a.kind);
    el.dataset.capSeverity = a.severity || '';
    el.dataset.state = state;
    el.dataset.attention = a.attention || '';
    el.setAttribute('aria-selected', String(a.id === this.selected));
    setText(cells.kind, kindLabel(a.kind));
    const badges = [];
    if (a.attention === 'action') badges.push(['attention', t('attention.action')]);
    if (a.certainty === 'possible') badges.push(['possible', t('certainty.possible')]);
    badges.push(['state state-' + state, t('state.' + state)]);
    if (a.escalated_at || a.manual_escalation) badges.push(['escalated', t('queue.escalated')]);
    if (!this.police && a.needs_police) badges.push(['police', t('queue.police')]);
    const key = badges.map((b) => b.join(':')).join('|');
    if (cells.badges.dataset.key !== key) {
      cells.badges.dataset.key = key;
      clear(cells.badges).append(...badges.map(([cls, text]) => h('span.badge.' + cls.split(' ').join('.'), text)));
    }
    const where = [a.case, a.device, a.distance_m !== undefined && a.distance_m !== null ? fmtMetres(a.distance_m) : null, a.risk ? t('risk.' + a.risk) : null].filter(Boolean).join(' · ');
    setText(cells.where, where);
  }

  tick() {
    const now = nowMs();
    for (const row of this.rows.values()) {
      const a = row.a;
      const since = ms(a.attention_since || a.raised_at || a.onset);
      setText(row.cells.since, Number.isFinite(since) ? fmtDuration((now - since) / 1000) : '');
      const deadline = ms(a.ack_deadline);
      const state = this.state(a);
      let text = '', over = false;
      if (state === 'unacknowledged' && Number.isFinite(deadline)) {
        const left = (deadline - now) / 1000;
        over = left < 0;
        text = over ? t('queue.overdue', { d: fmtDuration(-left) }) : t('queue.ack_in', { d: fmtDuration(left) });
      } else if (state === 'acknowledged') {
        const ack = this.police ? a.police_acknowledgement : a.acknowledgement;
        text = ack ? t('queue.acked_by', { who: ack.operator }) : '';
      } else if (state === 'resolved' && a.resolution) {
        text = fmtDateTime(a.resolution.at);
      }
      setText(row.cells.deadline, text);
      row.cells.deadline.classList.toggle('overdue', over);
      row.el.classList.toggle('overdue', over);
    }
  }

  select(id, fromClick) {
    const prev = this.rows.get(this.selected);
    if (prev) prev.el.setAttribute('aria-selected', 'false');
    this.selected = id;
    const row = this.rows.get(id);
    if (row) {
      row.el.setAttribute('aria-selected', 'true');
      if (!fromClick) row.el.scrollIntoView({ block: 'nearest' });
    }
    if (fromClick && this.onSelect) this.onSelect(id);
  }

  key(e) {
    if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp' && e.key !== 'Enter') return;
    const i = this.order.indexOf(this.selected);
    if (e.key === 'Enter') {
      if (this.selected) this.onSelect(this.selected);
      return;
    }
    e.preventDefault();
    const next = this.order[Math.max(0, Math.min(this.order.length - 1, i + (e.key === 'ArrowDown' ? 1 : -1)))];
    if (next) {
      this.select(next, true);
      this.rows.get(next)?.el.focus();
    }
  }

  destroy() {
    clearInterval(this.timer);
    for (const off of this.offs) off();
  }
}
