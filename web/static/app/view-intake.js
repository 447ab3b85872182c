// #/intake and #/intake/{id} (admin): the list of cases, an editor of a case
// file (text or upload), a map of its zones, "Check" with every error next to
// its field and the diff against the running case, and "Apply". An admin
// never sees a protected person's position: nothing here asks for positions.
import { t } from './i18n.js';
import { get, post, put, enc, ApiError } from './api.js';
import { on } from './store.js';
import { h, clear, debounce } from './util.js';
import { createMap, drawZones, boundsOf } from './map.js';
import { jsonLines, lineOf, parseErrorPosition } from './jsonlines.js';

const L = window.L;
const LH = 18; // editor line height, px (style.css .editor)
const PAD = 8;

const TEMPLATE = {
  id: 'RTM-2026-0000',
  risk: 'medium',
  offender: { device: 'OFF-0000' },
  protected: [{ id: 'P1', device: 'VIC-0000' }],
  coordinators: [{ organisation: 'Reclassering Nederland', name: '', phone: '' }],
  orders: [
    {
      id: 'contact-ban-p1',
      legal_basis: '',
      valid_from: new Date().toISOString().slice(0, 10) + 'T00:00:00+01:00',
      rule: { type: 'contact_ban', protected: 'P1', warning_radius_m: 1000, alarm_radius_m: 300 },
    },
  ],
};

function problemText(e) {
  const p = e.problem;
  if (p && typeof p === 'object' && p.code) return t('problem.' + p.code, p, e.message || p.code);
  if (typeof p === 'string') return t('problem.' + p, e, e.message || p);
  return e.message || e.error || JSON.stringify(e);
}

function short(v) {
  if (v === undefined) return '—';
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return s.length > 160 ? s.slice(0, 157) + '…' : s;
}

export function mount(container, route, { toast }) {
  let caseId = route.arg || null;
  let lines = new Map();
  let marks = []; // {line, kind, text}
  let alive = true;

  const list = h('ul.plain.case-list', { testid: 'intake-cases' });
  const upload = h('input', { type: 'file', accept: '.json,application/json', testid: 'intake-upload', hidden: true, onchange: (e) => readFile(e.target.files[0]) });
  const side = h('section.card.intake-side',
    h('div.section-head', h('h2', t('intake.cases')), h('button.btn.small', { type: 'button', testid: 'intake-new', onclick: () => newCase() }, t('intake.new'))),
    list);

  const editor = h('textarea.editor-text', { testid: 'intake-editor', spellcheck: 'false', wrap: 'off', 'aria-label': t('intake.editor'), autocapitalize: 'off', autocomplete: 'off' });
  const gutter = h('div.editor-gutter', { 'aria-hidden': 'true' });
  const backdrop = h('div.editor-backdrop', { 'aria-hidden': 'true' });
  const notes = h('div.editor-notes', { 'aria-hidden': 'true' });
  const editorBox = h('div.editor', h('div.editor-clip.gutter-clip', gutter), h('div.editor-main', backdrop, editor), h('div.editor-clip.notes-clip', notes));
  const title = h('h2');
  const status = h('div.intake-status', { testid: 'intake-status', role: 'status' });
  const check = h('button.btn', { type: 'button', testid: 'intake-check', onclick: () => run('check') }, t('intake.check'));
  const apply = h('button.btn.primary', { type: 'button', testid: 'intake-apply', onclick: () => run('apply') }, t('intake.apply'));
  const uploadButton = h('button.btn.small.ghost', { type: 'button', onclick: () => upload.click() }, t('intake.upload'));
  const format = h('button.btn.small.ghost', { type: 'button', onclick: () => formatText() }, t('intake.format'));
  const errorsEl = h('div.intake-errors', { testid: 'intake-errors' });
  const diffEl = h('div.intake-diff', { testid: 'intake-diff' });
  const mapEl = h('div.map.intake-map', { testid: 'intake-map' });

  container.append(h('div.intake',
    side,
    h('section.card.intake-main',
      h('div.section-head', title, h('div.controls', uploadButton, upload, format, check, apply)),
      status, editorBox),
    h('div.intake-right',
      h('section.card', h('h3', t('intake.problems')), errorsEl),
      h('section.card', h('h3', t('intake.diff')), diffEl),
      h('section.card', h('h3', t('intake.zones')), mapEl, h('div.legend', h('span.key.key-exclusion', t('rule.exclusion_zone')), h('span.key.key-inclusion', t('rule.inclusion_zone')), h('span.key.key-buffer', t('map.buffer'))), h('div.small.muted', t('intake.no_positions'))))));

  const map = createMap(mapEl, { zoom: 11 });
  const zones = L.layerGroup().addTo(map);
  setTimeout(() => map.invalidateSize(), 0);

  // ---- the editor: gutter, highlighted lines and notes follow the text ----

  function renderGutter() {
    const count = editor.value.split('\n').length;
    if (gutter.dataset.count === String(count)) return;
    gutter.dataset.count = String(count);
    const nums = [];
    for (let k = 1; k <= count; k++) nums.push(k);
    gutter.textContent = nums.join('\n');
  }
  function renderMarks() {
    clear(backdrop);
    clear(notes);
    const byLine = new Map();
    for (const m of marks) {
      if (!m.line) continue;
      if (!byLine.has(m.line)) byLine.set(m.line, []);
      byLine.get(m.line).push(m);
    }
    for (const [line, ms] of byLine) {
      const kind = ms.some((m) => m.kind === 'error') ? 'error' : 'warning';
      const top = PAD + (line - 1) * LH;
      backdrop.append(h('div.line-mark.' + kind, { style: `top:${top}px`, dataset: { line: String(line) } }));
      notes.append(h('div.line-note.' + kind, { style: `top:${top}px`, title: ms.map((m) => m.text).join('\n'), dataset: { line: String(line) } }, ms.map((m) => m.text).join(' · ')));
    }
    syncScroll();
  }
  function syncScroll() {
    const y = -editor.scrollTop;
    gutter.style.transform = `translateY(${y}px)`;
    backdrop.style.transform = `translate(${-editor.scrollLeft}px, ${y}px)`;
    notes.style.transform = `translateY(${y}px)`;
  }
  editor.addEventListener('scroll', syncScroll);
  const reparse = debounce(() => {
    lines = jsonLines(editor.value);
    drawMap();
  }, 400);
  editor.addEventListener('input', () => {
    renderGutter();
    if (marks.length) {
      // The marks belong to the text as it was checked.
      marks = [];
      renderMarks();
      status.dataset.state = 'stale';
      status.textContent = t('intake.changed');
    }
    reparse();
  });

  function goToLine(line) {
    if (!line) return;
    const rows = editor.value.split('\n');
    let start = 0;
    for (let k = 0; k < line - 1 && k < rows.length; k++) start += rows[k].length + 1;
    const end = start + (rows[line - 1] || '').length;
    editor.focus({ preventScroll: true });
    editor.setSelectionRange(start, end);
    const top = Math.max(0, (line - 1) * LH - editor.clientHeight / 3);
    editor.scrollTop = top;
    syncScroll();
    // Chromium may reveal the selection itself after this frame: have the last word.
    requestAnimationFrame(() => {
      editor.scrollTop = top;
      syncScroll();
    });
  }

  function setText(text) {
    editor.value = text;
    editor.scrollTop = 0;
    marks = [];
    lines = jsonLines(text);
    renderGutter();
    renderMarks();
    clear(errorsEl);
    clear(diffEl);
    status.textContent = '';
    delete status.dataset.state;
    drawMap();
  }

  function formatText() {
    try {
      setText(JSON.stringify(JSON.parse(editor.value), null, 2));
    } catch (e) {
      showParseError(e);
    }
  }

  function drawMap() {
    zones.clearLayers();
    let c;
    try {
      c = JSON.parse(editor.value);
    } catch {
      return;
    }
    const layers = drawZones(zones, c, null);
    const b = boundsOf(layers);
    if (b) map.fitBounds(b.pad(0.3), { maxZoom: 16, animate: false });
  }

  // ---- cases ----

  async function loadList() {
    try {
      const cases = await get('/api/v1/cases');
      clear(list).append(...(cases || []).map((c) => h('li', h('a', { href: '#/intake/' + enc(c.id), class: c.id === caseId ? 'active' : '', dataset: { case: c.id } },
        h('span.mono', c.id), ' ', h('span.badge.risk.risk-' + c.risk, t('risk.' + c.risk)),
        h('div.small.muted', t('intake.case_line', { device: c.offender || '—', p: c.protected ?? '—', o: c.orders ?? '—' }))))));
      if (!cases || !cases.length) list.append(h('li.muted', t('intake.no_cases')));
    } catch (e) {
      clear(list).append(h('li.muted', t('error.generic', { error: e.message })));
    }
  }

  async function open(id) {
    caseId = id;
    title.textContent = id ? t('intake.editing', { id }) : t('intake.new_case');
    for (const a of list.querySelectorAll('a[data-case]')) a.classList.toggle('active', a.dataset.case === id);
    if (!id) {
      setText(JSON.stringify(TEMPLATE, null, 2));
      return;
    }
    setText('');
    status.textContent = t('common.loading');
    try {
      const c = await get('/api/v1/cases/' + enc(id));
      if (alive && caseId === id) setText(JSON.stringify(c, null, 2));
    } catch (e) {
      status.textContent = e.missing ? t('case.not_found', { id }) : t('error.generic', { error: e.message });
    }
  }

  function newCase() {
    if (location.hash !== '#/intake') location.hash = '#/intake';
    open(null);
  }

  function readFile(file) {
    if (!file) return;
    const reader = new FileReader();
    reader.onload = () => {
      setText(String(reader.result));
      let id = null;
      try {
        id = JSON.parse(reader.result).id;
      } catch {
        // Check will say why.
      }
      title.textContent = t('intake.uploaded', { name: file.name, id: id || '—' });
      upload.value = '';
    };
    reader.readAsText(file);
  }

  // ---- check and apply ----

  function showParseError(e, line, column, titleKey = 'intake.not_json') {
    const pos = line ? { line, column } : parseErrorPosition(editor.value, e);
    marks = pos.line ? [{ line: pos.line, kind: 'error', text: t('intake.syntax_here') }] : [];
    renderMarks();
    clear(errorsEl).append(h('div.error-group',
      h('div.error-item', { testid: 'intake-error', dataset: { field: '', line: String(pos.line || '') } },
        h('strong', t(titleKey)), ' ', pos.line ? t('intake.at_line', { line: pos.line, column: pos.column || '?' }) : '',
        h('div.small', e.message || e.error || ''))));
    status.dataset.state = 'error';
    status.textContent = t(titleKey);
    if (pos.line) goToLine(pos.line);
  }

  function showReport(report, applied) {
    const errors = report.errors || [];
    const warnings = report.warnings || [];
    marks = [];
    const groups = new Map();
    for (const [kind, listOf] of [['error', errors], ['warning', warnings]]) {
      for (const e of listOf) {
        const field = e.field || '';
        if (!groups.has(field)) groups.set(field, []);
        groups.get(field).push({ kind, e });
        marks.push({ line: lineOf(lines, field), kind, text: problemText(e) });
      }
    }
    renderMarks();
    clear(errorsEl);
    if (!groups.size) errorsEl.append(h('div.ok', { testid: 'intake-ok' }, applied ? t('intake.applied_ok') : t('intake.no_problems')));
    for (const [field, items] of groups) {
      const line = lineOf(lines, field);
      const order = items.find((x) => x.e.order)?.e.order;
      errorsEl.append(h('div.error-group', { dataset: { field } },
        h('button.field-link', { type: 'button', onclick: () => goToLine(line), title: t('intake.go_to_line') },
          h('span.mono', field || t('intake.whole_case')), order ? h('span.badge', t('intake.order', { id: order })) : null, line ? h('span.muted.small', ' ' + t('intake.line', { line })) : null),
        h('ul.plain', items.map(({ kind, e }) => h('li.error-item.' + kind, { testid: kind === 'error' ? 'intake-error' : 'intake-warning', dataset: { field, order: e.order || '', line: String(line || '') } },
          h('span.badge.' + kind, t('intake.' + kind)), ' ', problemText(e))))));
    }
    const diff = report.diff;
    clear(diffEl);
    if (Array.isArray(diff)) {
      diffEl.append(diff.length ? h('table.table.compact', { testid: 'intake-diff-table' },
        h('thead', h('tr', h('th', t('intake.path')), h('th', t('intake.before')), h('th', t('intake.after')))),
        h('tbody', diff.map((d) => h('tr', { dataset: { path: d.path } },
          h('td.mono', h('button.field-link', { type: 'button', onclick: () => goToLine(lineOf(lines, d.path)) }, d.path)),
          h('td.mono.before', short(d.before)), h('td.mono.after', short(d.after))))))
        : h('div.muted', report.exists === false ? t('intake.diff_new') : t('intake.diff_none')));
    } else {
      diffEl.append(h('div.muted', t('intake.diff_unavailable')));
    }
    const n = errors.length, w = warnings.length;
    status.dataset.state = n ? 'error' : w ? 'warning' : 'ok';
    status.textContent = n ? t('intake.summary_errors', { n, w }) : w ? t('intake.summary_warnings', { w }) : applied ? t('intake.applied_ok') : t('intake.no_problems');
    if (n) goToLine(marks.find((m) => m.kind === 'error' && m.line)?.line);
  }

  async function run(what) {
    const text = editor.value;
    lines = jsonLines(text);
    let parsed;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      showParseError(e);
      return;
    }
    const id = parsed && typeof parsed.id === 'string' && parsed.id.trim() ? parsed.id.trim() : caseId;
    if (!id) {
      showReport({ errors: [{ field: 'id', problem: { code: 'empty_id' }, message: t('problem.empty_id') }] });
      return;
    }
    check.disabled = apply.disabled = true;
    status.dataset.state = 'busy';
    status.textContent = what === 'check' ? t('intake.checking') : t('intake.applying');
    try {
      if (what === 'check') {
        const report = await post(`/api/v1/cases/${enc(id)}/check`, text);
        showReport(report || {});
      } else {
        const result = await put(`/api/v1/cases/${enc(id)}`, text);
        showReport({ errors: [], warnings: (result && result.warnings) || [], diff: result && result.diff }, true);
        toast(t('intake.applied', { id, outcome: t('intake.outcome.' + (result && result.outcome), null, '') }), 'ok');
        if (caseId !== id) {
          caseId = id;
          history.replaceState(null, '', '#/intake/' + enc(id));
        }
        loadList();
      }
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      const b = e.body || {};
      if (e.status === 400 && (b.line || /not a case|json|expected|line \d+/i.test(b.error || ''))) {
        const m = String(b.error || '').match(/line (\d+) column (\d+)/);
        showParseError({ message: b.error }, b.line || (m && +m[1]), b.column || (m && +m[2]), 'intake.not_case');
      } else if (e.status === 422 || (e.status === 400 && (b.errors || b.report))) {
        showReport(b.report ? { ...b.report, diff: b.diff } : b);
        if (what === 'apply') toast(t('intake.refused'), 'error');
      } else if (e.missing && what === 'check') {
        status.dataset.state = 'error';
        status.textContent = t('intake.check_unavailable');
      } else {
        status.dataset.state = 'error';
        status.textContent = t('error.generic', { error: e.message });
      }
    } finally {
      check.disabled = apply.disabled = false;
    }
  }

  const offs = [on('case', () => loadList())];
  loadList();
  open(caseId);
  return {
    update(r) {
      if ((r.arg || null) !== caseId) open(r.arg || null);
    },
    unmount() {
      alive = false;
      offs.forEach((o) => o());
      map.remove();
    },
  };
}

