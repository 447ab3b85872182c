// #/police: for a dispatcher or an officer on a phone. Police alerts only (the
// API filters them), a map of the selected one, acknowledge, and the street
// lookup: tap the map for the bans covering that place, or search a case or
// device id for the bans that apply to it.
import { t } from './i18n.js';
import { get, qs, enc } from './api.js';
import { store, on, getCase } from './store.js';
import { h, clear, fmtMetres, fmtDate, frameBatch } from './util.js';
import { AlertQueue } from './queue.js';
import { AlertDetail } from './detail.js';
import { createMap, AlertOverlay } from './map.js';

const L = window.L;

export function mount(container, route, { toast }) {
  const queueEl = h('section.pane.queue-pane.police-queue', { 'aria-label': t('police.alerts') });
  const mapEl = h('div.map.police-map', { testid: 'map' });
  const detailEl = h('section.pane.police-detail');
  const results = h('div.lookup-results', { testid: 'lookup-results', 'aria-live': 'polite' });
  const search = h('input', { type: 'search', placeholder: t('police.search_placeholder'), 'aria-label': t('police.search_placeholder'), testid: 'lookup-person', autocapitalize: 'characters', spellcheck: 'false' });
  const searchForm = h('form.lookup-form', { onsubmit: (e) => { e.preventDefault(); lookupPerson(search.value.trim()); } },
    search, h('button.btn.primary', { type: 'submit', testid: 'lookup-submit' }, t('police.search')));
  const tabs = h('div.tabs', { role: 'tablist' });
  const panel = h('div.police-panel');
  container.append(h('div.police-view',
    h('div.police-side', h('h2.pane-title', t('police.alerts')), queueEl),
    h('div.police-main', searchForm, h('div.map-hint.muted', t('police.tap_hint')), mapEl, tabs, panel)));

  const map = createMap(mapEl, { zoom: 12 });
  const overlay = new AlertOverlay(map);
  const pin = L.layerGroup().addTo(map);
  let selected = null;
  let selectedCase = null;
  let tab = 'lookup';

  const queue = new AlertQueue(queueEl, { police: true, onSelect: (id) => select(id) });
  const detail = new AlertDetail(detailEl, { toast, police: true });

  function renderTabs() {
    clear(tabs).append(
      h('button.tab', { type: 'button', role: 'tab', 'aria-selected': String(tab === 'alert'), onclick: () => setTab('alert') }, t('police.tab_alert')),
      h('button.tab', { type: 'button', role: 'tab', 'aria-selected': String(tab === 'lookup'), onclick: () => setTab('lookup') }, t('police.tab_lookup')));
    clear(panel).append(tab === 'alert' ? detailEl : results);
  }
  function setTab(name) {
    tab = name;
    renderTabs();
  }

  async function select(id) {
    selected = id;
    queue.select(id, false);
    detail.show(id);
    setTab('alert');
    const a = store.alerts.get(id);
    if (!a) return;
    selectedCase = null;
    overlay.show(a, null, null, null, true);
    try {
      selectedCase = await getCase(a.case);
      if (selected === id) overlay.show(store.alerts.get(id), selectedCase, null, null, false);
    } catch {
      // Parties only.
    }
  }

  function banItem(b) {
    const kind = b.kind || (b.rule && b.rule.type);
    const where = b.inside === false ? t('police.warning_area') : b.inside === true ? t('police.inside') : b.valid_now === false ? t('police.not_in_force') : null;
    return h('li.lookup-result', { testid: 'lookup-result', class: b.valid_now === false ? 'inactive' : '', dataset: { case: b.case || '', order: b.order || '', kind: kind || '' } },
      h('div.line1', h('strong', t('rule.' + kind, null, kind || '')), b.risk ? h('span.badge.risk.risk-' + b.risk, t('risk.' + b.risk)) : null, where ? h('span.badge', where) : null),
      h('div.small',
        [b.case ? [t('police.case') + ' ', h('a', { href: '#/case/' + enc(b.case) }, b.case)] : null,
          b.order ? ' · ' + b.order : null,
          b.offender ? ' · ' + t('police.offender') + ' ' + b.offender : null,
          Number.isFinite(b.distance_m) ? ' · ' + (kind === 'contact_ban' ? t('police.distance_person', { d: fmtMetres(b.distance_m) }) : b.distance_m < 0 ? t('police.inside_by', { d: fmtMetres(-b.distance_m) }) : t('police.distance_zone', { d: fmtMetres(b.distance_m) })) : null,
          b.valid_until ? ' · ' + t('police.valid_until', { d: fmtDate(b.valid_until) }) : null,
          b.legal_basis ? h('div.muted', b.legal_basis) : null]));
  }

  function showResults(title, list, error) {
    setTab('lookup');
    clear(results).append(h('h3', title));
    if (error) results.append(h('div.empty.muted', error));
    else if (!list.length) results.append(h('div.empty', { testid: 'lookup-none' }, t('police.no_bans')));
    else results.append(h('ul.plain.lookup-list', list.map(banItem)));
    // On a phone the results are below the map: bring the first into sight.
    const r = results.getBoundingClientRect();
    if (r.top > window.innerHeight - 80) tabs.scrollIntoView({ block: 'start', behavior: 'smooth' });
  }

  async function lookupPlace(latlng) {
    pin.clearLayers();
    L.circleMarker(latlng, { pane: 'parties', radius: 7, className: 'lookup-pin', weight: 2 }).addTo(pin);
    showResults(t('police.looking'), []);
    try {
      const list = await get('/api/v1/bans' + qs({ lat: latlng.lat.toFixed(6), lon: latlng.lng.toFixed(6) }));
      showResults(t('police.bans_here', { lat: latlng.lat.toFixed(5), lon: latlng.lng.toFixed(5) }), Array.isArray(list) ? list : list.bans || []);
    } catch (e) {
      showResults(t('police.bans_here', { lat: latlng.lat.toFixed(5), lon: latlng.lng.toFixed(5) }), [], e.missing ? t('police.lookup_unavailable') : t('error.generic', { error: e.message }));
    }
  }

  /** The person route answers per case with its orders: one item per order. */
  function personItems(list) {
    const out = [];
    for (const c of Array.isArray(list) ? list : []) {
      if (!Array.isArray(c.orders)) {
        out.push(c);
        continue;
      }
      for (const o of c.orders) {
        out.push({
          case: c.case, risk: c.risk, offender: c.offender, matched_as: c.matched_as,
          order: o.id, kind: o.rule && o.rule.type, valid_until: o.valid_until, legal_basis: o.legal_basis, valid_now: o.valid_now,
        });
      }
    }
    // Orders in force first.
    return out.sort((a, b) => (b.valid_now !== false) - (a.valid_now !== false));
  }

  async function lookupPerson(person) {
    if (!person) return;
    showResults(t('police.looking'), []);
    try {
      const list = await get('/api/v1/bans' + qs({ person }));
      showResults(t('police.bans_for', { person }), personItems(Array.isArray(list) ? list : list.bans || []));
    } catch (e) {
      const notFound = e.status === 404 && /^no /.test((e.body && e.body.error) || '');
      showResults(t('police.bans_for', { person }), [], notFound ? t('police.person_unknown', { person })
        : e.status === 400 ? t('police.person_unsupported') : e.missing ? t('police.lookup_unavailable') : t('error.generic', { error: e.message }));
    }
  }

  map.on('click', (e) => lookupPlace(e.latlng));

  const redraw = frameBatch(() => {
    const a = selected && store.alerts.get(selected);
    if (a) overlay.show(a, selectedCase, null, null, false);
  });
  const offs = [
    on('alert', (rec) => {
      if (rec.id === selected) {
        detail.update();
        redraw();
      }
    }),
    on('alerts', () => selected && detail.show(selected)),
  ];
  const resize = () => map.invalidateSize();
  window.addEventListener('resize', resize);
  setTimeout(resize, 0);
  renderTabs();
  clear(results).append(h('div.muted', t('police.lookup_intro')));

  return {
    update() {},
    unmount() {
      offs.forEach((o) => o());
      window.removeEventListener('resize', resize);
      queue.destroy();
      detail.destroy();
      overlay.destroy();
      map.remove();
    },
  };
}
