// #/intake and #/intake/{id} (admin): the list of cases, an editor of a case
// file (text or upload), a map of its zones where new ones are drawn (and
// existing ones reshaped) into the file, "Check" with every error next to its
// field and the diff against the running case, and "Apply". An admin never
// sees a protected person's position: nothing here asks for positions.
import { t, lang } from './i18n.js';
import { get, post, put, enc, ApiError } from './api.js';
import { on } from './store.js';
import { h, clear, debounce, now as nowMs, localDay, fmtMetres } from './util.js';
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

// ---- drawn shapes as case-file geometry ----

const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
const ZONE_RULES = ['exclusion_zone', 'inclusion_zone'];
const DRAFT_STYLE = { className: 'zone-draft', weight: 2 };
const round6 = (x) => Math.round(x * 1e6) / 1e6;

/** A Leaflet ring as a GeoJSON ring: [lon, lat], 6 decimals, no repeated point, closed. */
function ringOf(latlngs) {
  const out = [];
  for (const p of latlngs) {
    const q = [round6(p.lng), round6(p.lat)];
    const last = out[out.length - 1];
    if (!last || last[0] !== q[0] || last[1] !== q[1]) out.push(q);
  }
  if (out.length > 1 && out[0][0] === out[out.length - 1][0] && out[0][1] === out[out.length - 1][1]) out.pop();
  if (out.length) out.push([out[0][0], out[0][1]]);
  return out;
}

/** Twice the signed area in degrees² (shoelace): > 0 counter-clockwise. */
function signedArea2(ring) {
  let a = 0;
  for (let k = 0; k + 1 < ring.length; k++) a += ring[k][0] * ring[k + 1][1] - ring[k + 1][0] * ring[k][1];
  return a;
}

/** RFC 7946: the outer ring counter-clockwise, holes clockwise. */
function polygonOf(rings) {
  return rings.map((r, k) => {
    const ring = ringOf(r);
    return (signedArea2(ring) > 0) === (k === 0) ? ring : ring.reverse();
  });
}

/** The geometry of a drawn layer in the case file's form: a circle as a Point with radius_m. */
function geometryOf(layer) {
  if (layer instanceof L.Circle) {
    const c = layer.getLatLng();
    return { type: 'Point', coordinates: [round6(c.lng), round6(c.lat)], radius_m: Math.max(1, Math.round(layer.getRadius())) };
  }
  const ll = layer.getLatLngs();
  // Leaflet holds [ring, hole…] for a polygon and [[ring, hole…], …] for several.
  if (L.LineUtil.isFlat(ll)) return { type: 'Polygon', coordinates: polygonOf([ll]) };
  if (L.LineUtil.isFlat(ll[0])) return { type: 'Polygon', coordinates: polygonOf(ll) };
  const polygons = ll.map(polygonOf);
  return polygons.length === 1 ? { type: 'Polygon', coordinates: polygons[0] } : { type: 'MultiPolygon', coordinates: polygons };
}

/** A case file's geometry as an editable layer (a copy), or null. */
function layerOf(g) {
  const ll = ([lon, lat]) => [lat, lon];
  try {
    if (g.type === 'Point' && g.radius_m > 0) return L.circle(ll(g.coordinates), { ...DRAFT_STYLE, radius: g.radius_m });
    if (g.type === 'Polygon') return L.polygon(g.coordinates.map((r) => r.map(ll)), DRAFT_STYLE);
    if (g.type === 'MultiPolygon') return L.polygon(g.coordinates.map((p) => p.map((r) => r.map(ll))), DRAFT_STYLE);
  } catch {
    // Not a geometry Leaflet can draw; Check says why.
  }
  return null;
}

/** Area in m² of a geometry (flat earth around its first point: fine for a city). */
function areaM2(g) {
  if (g.type === 'Point') return Math.PI * g.radius_m * g.radius_m;
  const polygons = g.type === 'Polygon' ? [g.coordinates] : g.coordinates;
  const first = polygons[0] && polygons[0][0] && polygons[0][0][0];
  if (!first) return 0;
  const kx = 111320 * Math.cos((first[1] * Math.PI) / 180), ky = 110540;
  let a = 0;
  for (const rings of polygons) {
    rings.forEach((ring, k) => {
      const m = Math.abs(signedArea2(ring)) / 2 * kx * ky;
      a += k === 0 ? m : -m;
    });
  }
  return a;
}

function fmtArea(m2) {
  if (m2 >= 1e6) return t('intake.draw.area_km2', { v: (m2 / 1e6).toFixed(2) });
  return t('intake.draw.area_ha', { v: (m2 / 1e4).toFixed(m2 >= 1e5 ? 0 : 1) });
}

/** 00:00 today in Amsterdam (kordon's day), with that day's offset. */
function todayStart() {
  const day = localDay(nowMs());
  let offset = '+01:00';
  try {
    // 00:00 UTC is before the clocks change (01:00 UTC), so its offset is that of local midnight.
    const name = new Intl.DateTimeFormat('en-US', { timeZone: 'Europe/Amsterdam', timeZoneName: 'longOffset' })
      .formatToParts(new Date(day + 'T00:00:00Z')).find((p) => p.type === 'timeZoneName').value;
    const m = name.match(/([+-]\d{2}):?(\d{2})/);
    offset = m ? `${m[1]}:${m[2]}` : 'Z';
  } catch {
    // Keep CET.
  }
  return `${day}T00:00:00${offset === 'Z' ? '+00:00' : offset}`;
}

function newOrderId(orders, type) {
  const base = type === 'inclusion_zone' ? 'inclusion-zone' : 'exclusion-zone';
  const taken = new Set(orders.map((o) => o && o.id));
  let n = 1;
  while (taken.has(`${base}-${n}`)) n++;
  return `${base}-${n}`;
}

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
  const drawPolygon = h('button.btn.small', { type: 'button', testid: 'intake-draw-polygon', 'aria-pressed': 'false', onclick: () => startDraw('Polygon') }, t('intake.draw.polygon'));
  const drawCircle = h('button.btn.small', { type: 'button', testid: 'intake-draw-circle', 'aria-pressed': 'false', onclick: () => startDraw('Circle') }, t('intake.draw.circle'));
  const drawHint = h('div.small.muted.draw-hint', { testid: 'intake-draw-hint' }, t('intake.draw.hint'));
  const kind = h('select.small', { testid: 'intake-zone-kind', 'aria-label': t('intake.draw.kind') });
  const draftInfo = h('div.draft-info', { testid: 'intake-draft-info' });
  const addZone = h('button.btn.small.primary', { type: 'button', testid: 'intake-add-zone', onclick: () => writeDraft() }, t('intake.draw.add'));
  const discard = h('button.btn.small.ghost', { type: 'button', testid: 'intake-draw-delete', onclick: () => removeDraft() }, t('intake.draw.delete'));
  const draftPanel = h('div.draft-panel', { testid: 'intake-draft', hidden: true },
    draftInfo, h('div.controls', kind, addZone, discard), h('div.small.muted', t('intake.draw.edit_hint')));

  container.append(h('div.intake',
    side,
    h('section.card.intake-main',
      h('div.section-head', title, h('div.controls', uploadButton, upload, format, check, apply)),
      status, editorBox),
    h('div.intake-right',
      h('section.card', h('h3', t('intake.problems')), errorsEl),
      h('section.card', h('h3', t('intake.diff')), diffEl),
      h('section.card', h('div.section-head', h('h3', t('intake.zones')), h('div.controls.draw-tools', drawPolygon, drawCircle)), drawHint, mapEl, draftPanel, h('div.legend', h('span.key.key-exclusion', t('rule.exclusion_zone')), h('span.key.key-inclusion', t('rule.inclusion_zone')), h('span.key.key-buffer', t('map.buffer')), h('span.key.key-draft', t('intake.draw.drawn'))), h('div.small.muted', t('intake.no_positions'))))));

  const map = createMap(mapEl, { zoom: 11 });
  const zones = L.layerGroup().addTo(map);
  setTimeout(() => map.invalidateSize(), 0);
  let draft = null; // {layer, from: order id or null}: the shape drawn, not yet in the file
  let drawing = null; // 'Polygon' | 'Circle' while drawing
  if (map.pm) {
    map.pm.setLang(lang(), {
      tooltips: {
        firstVertex: t('intake.draw.tip.first_vertex'),
        continueLine: t('intake.draw.tip.continue'),
        finishPoly: t('intake.draw.tip.finish_polygon'),
        startCircle: t('intake.draw.tip.circle_centre'),
        finishCircle: t('intake.draw.tip.circle_radius'),
      },
    }, 'en');
    map.on('pm:drawstart', (e) => setDrawing(e.shape));
    map.on('pm:drawend', () => setDrawing(null));
    map.on('pm:create', (e) => setDraft(e.layer, null));
  } else {
    drawPolygon.disabled = drawCircle.disabled = true;
  }
  const onKey = (e) => {
    if (e.key === 'Escape' && drawing) map.pm.disableDraw();
  };
  document.addEventListener('keydown', onKey);

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
    const orders = c && Array.isArray(c.orders) ? c.orders.filter((o) => o && typeof o === 'object') : [];
    renderKinds(orders);
    const layers = [];
    for (const order of orders) {
      let made = [];
      try {
        made = drawZones(zones, { orders: [order] }, null);
      } catch {
        // A geometry being typed; Check says what is wrong with it.
      }
      if (ZONE_RULES.includes(order.rule && order.rule.type)) {
        for (const layer of made) layer.on('click', () => reshape(order));
      }
      layers.push(...made);
    }
    const b = boundsOf(layers);
    if (b) map.fitBounds(b.pad(0.3), { maxZoom: 16, animate: false });
  }

  // ---- drawing zones into the file ----

  function setDrawing(shape) {
    drawing = shape || null;
    drawPolygon.setAttribute('aria-pressed', String(drawing === 'Polygon'));
    drawCircle.setAttribute('aria-pressed', String(drawing === 'Circle'));
    drawHint.textContent = drawing === 'Polygon' ? t('intake.draw.hint_polygon') : drawing === 'Circle' ? t('intake.draw.hint_circle') : t('intake.draw.hint');
  }

  function startDraw(shape) {
    if (!map.pm) return;
    const again = drawing === shape;
    map.pm.disableDraw();
    if (again) return; // the button toggles
    map.pm.enableDraw(shape, {
      snappable: false,
      allowSelfIntersection: false,
      continueDrawing: false,
      tooltips: true,
      pathOptions: DRAFT_STYLE,
      templineStyle: { className: 'zone-draft-line', weight: 2 },
      hintlineStyle: { className: 'zone-draft-line', weight: 2, dashArray: '5,5' },
    });
  }

  /** The options of "what to do with the shape": new zones, or one of the file's zone orders. */
  function renderKinds(orders) {
    const previous = kind.value;
    clear(kind).append(
      h('option', { value: 'exclusion_zone' }, t('intake.draw.as_exclusion')),
      h('option', { value: 'inclusion_zone' }, t('intake.draw.as_inclusion')));
    const zoneOrders = orders.filter((o) => typeof o.id === 'string' && o.rule && ZONE_RULES.includes(o.rule.type));
    if (zoneOrders.length) {
      kind.append(h('optgroup', { label: t('intake.draw.replace_group') },
        zoneOrders.map((o) => h('option', { value: 'replace:' + o.id }, t('intake.draw.replace', { id: o.id, rule: t('rule.' + o.rule.type) })))));
    }
    kind.value = [...kind.options].some((o) => o.value === previous) ? previous : 'exclusion_zone';
  }

  /** The draft as the file will hold it: a reshaped MultiPolygon stays one. */
  function draftGeometry() {
    const g = geometryOf(draft.layer);
    return draft.multi && g.type === 'Polygon' ? { type: 'MultiPolygon', coordinates: [g.coordinates] } : g;
  }

  function describeDraft() {
    if (!draft) return;
    const g = draftGeometry();
    const area = fmtArea(areaM2(g));
    draftInfo.textContent = g.type === 'Point'
      ? t('intake.draw.circle_info', { radius: fmtMetres(g.radius_m), area })
      : t('intake.draw.polygon_info', { n: (g.type === 'Polygon' ? [g.coordinates] : g.coordinates).reduce((sum, rings) => sum + rings.reduce((k, r) => k + r.length - 1, 0), 0), area });
    if (draft.from) draftInfo.textContent = t('intake.draw.reshaping', { id: draft.from }) + ' · ' + draftInfo.textContent;
  }

  function setDraft(layer, from, multi = false) {
    removeDraft();
    draft = { layer, from, multi };
    if (!map.hasLayer(layer)) layer.addTo(map);
    layer.pm.enable({ snappable: false, allowSelfIntersection: false });
    layer.on('pm:edit pm:change', describeDraft);
    const path = layer.getElement && layer.getElement();
    if (path) path.setAttribute('data-testid', 'intake-draft-shape');
    renderKinds(currentOrders());
    if (from) kind.value = 'replace:' + from;
    draftPanel.hidden = false;
    describeDraft();
  }

  function removeDraft() {
    if (draft) {
      if (draft.layer.pm) draft.layer.pm.disable();
      draft.layer.remove();
      draft = null;
    }
    draftPanel.hidden = true;
  }

  function currentOrders() {
    try {
      const c = JSON.parse(editor.value);
      return c && Array.isArray(c.orders) ? c.orders.filter((o) => o && typeof o === 'object') : [];
    } catch {
      return [];
    }
  }

  /** An existing zone clicked: a copy of it to reshape, meant to replace its geometry. */
  function reshape(order) {
    if (drawing || !map.pm || !order.rule || !order.rule.geometry) return;
    const layer = layerOf(order.rule.geometry);
    if (layer) setDraft(layer, order.id, order.rule.geometry.type === 'MultiPolygon');
  }

  function selectString(field) {
    const line = lineOf(lines, field);
    if (!line) return;
    goToLine(line);
    const rows = editor.value.split('\n');
    let start = 0;
    for (let k = 0; k < line - 1; k++) start += rows[k].length + 1;
    const row = rows[line - 1] || '';
    const open = row.indexOf('"', row.indexOf(':'));
    const close = row.lastIndexOf('"');
    if (open >= 0 && close > open) editor.setSelectionRange(start + open + 1, start + close);
  }

  function writeDraft() {
    if (!draft) return;
    let c;
    try {
      c = JSON.parse(editor.value);
    } catch (e) {
      showParseError(e);
      return;
    }
    if (!c || typeof c !== 'object' || Array.isArray(c)) {
      status.dataset.state = 'error';
      status.textContent = t('intake.draw.not_a_case');
      return;
    }
    if (!Array.isArray(c.orders)) c.orders = [];
    const geometry = draftGeometry();
    const choice = kind.value;
    let field, message, select = false;
    if (choice.startsWith('replace:')) {
      const id = choice.slice('replace:'.length);
      const k = c.orders.findIndex((o) => o && o.id === id && o.rule && typeof o.rule === 'object' && ZONE_RULES.includes(o.rule.type));
      if (k < 0) {
        status.dataset.state = 'error';
        status.textContent = t('intake.draw.order_gone', { id });
        renderKinds(currentOrders());
        return;
      }
      c.orders[k].rule.geometry = geometry;
      field = `orders[${k}].rule.geometry`;
      message = t('intake.draw.replaced', { id });
    } else {
      const type = choice === 'inclusion_zone' ? 'inclusion_zone' : 'exclusion_zone';
      const id = newOrderId(c.orders, type);
      const rule = type === 'inclusion_zone'
        ? { type, geometry, schedule: { windows: [{ days: [...DAYS], start: '22:00', end: '06:00' }] }, grace_s: 600 }
        : { type, geometry };
      c.orders.push({ id, legal_basis: t('intake.draw.legal_basis_placeholder'), valid_from: todayStart(), rule });
      field = `orders[${c.orders.length - 1}].legal_basis`;
      message = t(type === 'inclusion_zone' ? 'intake.draw.added_inclusion' : 'intake.draw.added', { id });
      select = true;
    }
    removeDraft();
    setText(JSON.stringify(c, null, 2));
    status.dataset.state = 'warning';
    status.textContent = message;
    if (select) selectString(field);
    else goToLine(lineOf(lines, field));
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
      document.removeEventListener('keydown', onKey);
      if (map.pm) map.pm.disableDraw();
      removeDraft();
      map.remove();
    },
  };
}

