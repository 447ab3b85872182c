// The detail panel of one alert: what it is, the actions (acknowledge,
// resolve with a disposition and a note, add a note, escalate by hand) and
// everything people did about it. Forms are built once per alert so that a
// live update never wipes what an operator is typing.
import { t } from './i18n.js';
import { post, enc } from './api.js';
import { store, refreshAlert, dispositions } from './store.js';
import { h, clear, setText, now as nowMs, ms, fmtDuration, fmtMetres, fmtFull, fmtDateTime, level, alertState, kindLabel, dispositionLabel } from './util.js';

export class AlertDetail {
  constructor(container, { toast, police = false, onPlayback } = {}) {
    this.container = container;
    this.toast = toast;
    this.police = police;
    this.onPlayback = onPlayback;
    this.id = null;
    this.timer = setInterval(() => this.tick(), 1000);
  }

  show(id) {
    if (id === this.id && this.root) {
      this.update();
      return;
    }
    this.id = id;
    clear(this.container);
    this.root = null;
    const a = store.alerts.get(id);
    if (!a) {
      this.container.append(h('div.empty.muted', id ? t('detail.not_found') : t('detail.none')));
      return;
    }
    this.build(a);
    this.update();
  }

  build(a) {
    const root = h('div.detail', { testid: 'alert-detail', dataset: { alertId: a.id } });
    this.root = root;
    this.head = h('div.detail-head');
    this.facts = h('dl.facts');
    this.history = h('ol.history', { testid: 'alert-history' });
    this.deliveries = h('div.deliveries');
    const actions = h('div.actions');

    // Acknowledge, with an optional note.
    this.ackNote = h('input', { type: 'text', placeholder: t('detail.ack_note'), 'aria-label': t('detail.ack_note'), testid: 'ack-note', maxlength: 500 });
    this.ackButton = h('button.btn.primary', { type: 'button', testid: 'alert-ack', onclick: () => this.ack() }, t('detail.ack'));
    actions.append(h('div.action-row', this.ackNote, this.ackButton));

    if (!this.police) {
      // Resolve: a disposition and a note, both required.
      this.dispo = h('select', { testid: 'disposition-select', 'aria-label': t('detail.disposition'), onchange: () => this.validate() },
        h('option', { value: '' }, t('detail.choose_disposition')));
      dispositions().then((list) => {
        for (const code of list) this.dispo.append(h('option', { value: code }, dispositionLabel(code)));
      });
      this.resolveNote = h('textarea', { rows: 2, testid: 'resolve-note', placeholder: t('detail.resolve_note'), 'aria-label': t('detail.resolve_note'), oninput: () => this.validate(), maxlength: 2000 });
      this.resolveSubmit = h('button.btn.primary', { type: 'button', testid: 'resolve-submit', disabled: true, onclick: () => this.resolve() }, t('detail.resolve_submit'));
      this.resolveForm = h('div.resolve-form', { hidden: true },
        h('label', t('detail.disposition'), this.dispo),
        h('label', t('detail.resolve_note_label'), this.resolveNote),
        h('div.hint.muted', t('detail.resolve_hint')),
        h('div.action-row', this.resolveSubmit, h('button.btn.ghost', { type: 'button', onclick: () => (this.resolveForm.hidden = true) }, t('common.cancel'))));
      this.resolveButton = h('button.btn', { type: 'button', testid: 'alert-resolve', onclick: () => {
        this.resolveForm.hidden = !this.resolveForm.hidden;
        if (!this.resolveForm.hidden) this.dispo.focus();
      } }, t('detail.resolve'));

      // Escalate by hand, with a note.
      this.escNote = h('input', { type: 'text', placeholder: t('detail.escalate_note'), 'aria-label': t('detail.escalate_note'), testid: 'escalate-note', oninput: () => this.validate(), maxlength: 500 });
      this.escButton = h('button.btn.warn', { type: 'button', testid: 'escalate', disabled: true, onclick: () => this.escalate() }, t('detail.escalate'));
      actions.append(h('div.action-row', this.resolveButton), this.resolveForm, h('div.action-row', this.escNote, this.escButton));
    }

    // A note.
    this.noteText = h('textarea', { rows: 2, testid: 'note-text', placeholder: t('detail.note_placeholder'), 'aria-label': t('detail.note_placeholder'), oninput: () => this.validate(), maxlength: 2000 });
    this.noteSubmit = h('button.btn', { type: 'button', testid: 'note-submit', disabled: true, onclick: () => this.note() }, t('detail.add_note'));
    actions.append(h('div.action-row.note-row', this.noteText, this.noteSubmit));

    const tools = h('div.tools');
    if (this.onPlayback) tools.append(h('button.btn.small', { type: 'button', testid: 'playback-open', onclick: () => this.onPlayback(this.id) }, t('detail.playback')));
    tools.append(h('a.btn.small.ghost', { href: '#/case/' + enc(a.case) }, t('detail.open_case')));

    root.append(this.head, this.facts, tools, h('h3', t('detail.actions')), actions, h('h3', t('detail.history')), this.history, this.deliveries);
    this.container.append(root);
  }

  validate() {
    if (!this.root) return;
    const a = store.alerts.get(this.id);
    const busy = this.busy;
    if (this.resolveSubmit) this.resolveSubmit.disabled = busy || !a || !!a.resolution || !this.dispo.value || !this.resolveNote.value.trim();
    if (this.escButton) this.escButton.disabled = busy || !a || !!a.manual_escalation || !this.escNote.value.trim();
    this.noteSubmit.disabled = busy || !this.noteText.value.trim();
    const acked = a && (this.police ? a.police_acknowledgement : a.acknowledgement);
    this.ackButton.disabled = busy || !a || !!acked || (!this.police && !!a.resolution);
  }

  update() {
    const a = store.alerts.get(this.id);
    if (!a || !this.root) return;
    const state = this.police ? (!a.open ? 'cleared' : a.police_acknowledgement ? 'acknowledged' : 'unacknowledged') : alertState(a);
    this.root.dataset.severity = level(a.kind);
    this.root.dataset.state = state;
    clear(this.head).append(
      h('span.stripe'),
      h('div',
        h('h2', kindLabel(a.kind)),
        h('div.badges',
          a.attention === 'action' ? h('span.badge.attention', t('attention.action')) : h('span.badge', t('attention.information')),
          a.certainty ? h('span.badge.' + (a.certainty === 'possible' ? 'possible' : 'certain'), t('certainty.' + a.certainty)) : null,
          h('span.badge.state.state-' + state, t('state.' + state)),
          a.needs_police ? h('span.badge.police', t('queue.police')) : null)),
    );
    this.deadline = h('dd.mono');
    this.since = h('dd.mono');
    const fact = (label, value) => (value === undefined || value === null || value === '' ? [] : [h('dt', label), h('dd', value)]);
    clear(this.facts).append(
      ...fact(t('detail.case'), h('a', { href: '#/case/' + enc(a.case) }, a.case)),
      ...fact(t('detail.risk'), a.risk ? t('risk.' + a.risk) : null),
      ...fact(t('detail.order'), a.order),
      ...fact(t('detail.device'), a.device ? `${a.device} (${t('role.' + a.role, null, a.role || '')})` : null),
      ...fact(t('detail.distance'), a.distance_m !== undefined && a.distance_m !== null ? fmtMetres(a.distance_m) : null),
      ...fact(t('detail.movement'), movement(a.context)),
      ...fact(t('detail.onset'), fmtFull(a.onset)),
      ...fact(t('detail.raised'), a.raised_at ? fmtFull(a.raised_at) : null),
      h('dt', t('detail.waiting')), this.since,
      h('dt', t('detail.deadline')), this.deadline,
      ...fact(t('detail.reason'), a.reason ? t('reason.' + a.reason, null, a.reason) : null),
      ...this.partyFacts(a),
    );
    this.renderHistory(a);
    this.validate();
    this.tick();
  }

  partyFacts(a) {
    const out = [];
    for (const role of ['offender', 'protected']) {
      const p = a[role];
      if (!p) continue;
      const age = ms(a.ts) - ms(p.ts);
      out.push(h('dt', t('role.' + role)), h('dd', `${p.device} · ±${fmtMetres(p.acc)} · ${t('detail.position_age', { age: fmtDuration(p.age_s ?? age / 1000) })}`));
    }
    return out;
  }

  renderHistory(a) {
    const items = [];
    const push = (at, kind, who, text) => items.push({ at: ms(at), kind, who, text });
    push(a.raised_at || a.onset, 'raised', null, t('history.raised', { kind: kindLabel(a.kind) }));
    for (const ack of a.earlier_acknowledgements || []) push(ack.at, 'ack', ack.operator, this.ackText(ack, true));
    if (a.acknowledgement) push(a.acknowledgement.at, 'ack', a.acknowledgement.operator, this.ackText(a.acknowledgement));
    if (a.police_acknowledgement) push(a.police_acknowledgement.at, 'police_ack', a.police_acknowledgement.operator, this.ackText(a.police_acknowledgement, false, true));
    for (const n of a.notes || []) push(n.at, 'note', n.operator, n.text);
    if (a.escalated_at) push(a.escalated_at, 'escalated', null, t('history.escalated'));
    if (a.manual_escalation) push(a.manual_escalation.at, 'manual_escalation', a.manual_escalation.operator, t('history.manual_escalation', { note: a.manual_escalation.note }));
    for (const r of a.earlier_resolutions || []) push(r.at, 'resolution', r.operator, t('history.resolution_earlier', { disposition: dispositionLabel(r.disposition), note: r.note }));
    if (a.resolution) push(a.resolution.at, 'resolution', a.resolution.operator, t('history.resolution', { disposition: dispositionLabel(a.resolution.disposition), note: a.resolution.note || '' }));
    if (!a.open) push(a.ts, 'cleared', null, t('history.cleared', { reason: a.reason ? t('reason.' + a.reason, null, a.reason) : '—' }));
    items.sort((x, y) => (y.at || 0) - (x.at || 0));
    clear(this.history).append(...items.map((i) => h('li.hist-' + i.kind, { dataset: { kind: i.kind } },
      h('span.when.mono', fmtDateTime(i.at)), h('span.what', i.who ? h('strong', i.who + ': ') : null, i.text))));
    clear(this.deliveries);
    const deliveries = a.deliveries || [];
    if (deliveries.length) {
      this.deliveries.append(h('h3', t('detail.deliveries')), h('table.table.compact',
        h('thead', h('tr', h('th', t('detail.endpoint')), h('th', t('detail.attempts')), h('th', t('detail.outcome')), h('th', t('detail.at')))),
        h('tbody', deliveries.map((d) => h('tr', { class: /ok|deliver|success/i.test(d.outcome || '') ? '' : 'miss' },
          h('td', d.endpoint), h('td', String(d.attempts ?? '')), h('td', t('outcome.' + d.outcome, null, String(d.outcome ?? ''))), h('td.mono', fmtDateTime(d.at)))))));
    }
  }

  ackText(ack, earlier, police) {
    const key = police ? 'history.police_ack' : earlier ? 'history.ack_earlier' : 'history.ack';
    const parts = [t(key, { d: fmtDuration(ack.time_to_ack_s) })];
    if (ack.level && ack.level.kind) parts.push(`(${kindLabel(ack.level.kind)}${ack.level.certainty ? ', ' + t('certainty.' + ack.level.certainty) : ''})`);
    if (ack.note) parts.push('— ' + ack.note);
    return parts.join(' ');
  }

  tick() {
    if (!this.root || !this.since) return;
    const a = store.alerts.get(this.id);
    if (!a) return;
    const now = nowMs();
    setText(this.since, fmtDuration((now - ms(a.attention_since || a.raised_at || a.onset)) / 1000));
    const d = ms(a.ack_deadline);
    const acked = this.police ? a.police_acknowledgement : a.acknowledgement;
    let text = '—', over = false;
    if (acked) text = t('detail.acknowledged_by', { who: acked.operator, d: fmtDuration(acked.time_to_ack_s) });
    else if (Number.isFinite(d)) {
      over = d < now;
      text = over ? t('queue.overdue', { d: fmtDuration((now - d) / 1000) }) : t('queue.ack_in', { d: fmtDuration((d - now) / 1000) });
    }
    setText(this.deadline, text);
    this.deadline.classList.toggle('overdue', over);
  }

  async act(path, body, done, okKey) {
    this.busy = true;
    this.validate();
    try {
      await post(`/api/v1/alerts/${enc(this.id)}/${path}`, body);
      done();
      this.toast(t(okKey), 'ok');
      await refreshAlert(this.id).catch(() => {});
    } catch (e) {
      if (e.status === 503 && e.body?.stored === true) {
        // A cluster changing hands stored the action and applies it within
        // seconds: sent again, a note would be stored twice.
        done();
        this.toast(t('detail.action_pending'), 'info');
        for (const wait of [3000, 8000]) setTimeout(() => refreshAlert(this.id).catch(() => {}), wait);
        return;
      }
      this.toast(e.missing && !e.body?.error?.startsWith('no alert') ? t('error.not_available') : t('error.action', { error: e.message }), 'error');
    } finally {
      this.busy = false;
      this.update();
    }
  }

  ack() {
    const note = this.ackNote.value.trim();
    this.act('ack', note ? { note } : {}, () => (this.ackNote.value = ''), 'detail.ack_done');
  }

  resolve() {
    const disposition = this.dispo.value, note = this.resolveNote.value.trim();
    if (!disposition || !note) return;
    this.act('resolve', { disposition, note }, () => {
      this.resolveNote.value = '';
      this.dispo.value = '';
      this.resolveForm.hidden = true;
    }, 'detail.resolve_done');
  }

  note() {
    const text = this.noteText.value.trim();
    if (!text) return;
    this.act('notes', { text }, () => (this.noteText.value = ''), 'detail.note_done');
  }

  escalate() {
    const note = this.escNote.value.trim();
    if (!note) return;
    this.act('escalate', { note }, () => (this.escNote.value = ''), 'detail.escalate_done');
  }

  destroy() {
    clearInterval(this.timer);
  }
}

/**
 * How the two move (a contact-ban alert's `context`, docs/mqtt.md): the
 * reading first (it says whether the police wait), then his speed and the
 * time to contact when they close.
 */
function movement(c) {
  if (!c || !c.reading) return null;
  const parts = [t('reading.' + c.reading, null, c.reading)];
  if (Number.isFinite(c.offender_speed_mps)) parts.push(t('detail.his_speed', { v: Math.round(c.offender_speed_mps * 3.6) }));
  if (Number.isFinite(c.time_to_contact_s)) parts.push(t('detail.contact_in', { t: fmtDuration(c.time_to_contact_s) }));
  if (c.co_travel_fixes > 1) parts.push(t('detail.co_travel_fixes', { n: c.co_travel_fixes }));
  return h('span', { 'data-testid': 'alert-movement', 'data-reading': c.reading }, parts.join(' · '));
}
