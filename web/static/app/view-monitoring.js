// #/queue and #/alert/{id}: the monitoring room's alert queue, the live map
// and the detail panel of the selected alert, with track playback.
import { t } from './i18n.js';
import { store, on, getCase } from './store.js';
import { h, frameBatch, compareAlerts } from './util.js';
import { AlertQueue } from './queue.js';
import { AlertDetail } from './detail.js';
import { createMap, DeviceLayer, AlertOverlay } from './map.js';
import { Playback } from './playback.js';

export function mount(container, route, { toast }) {
  const queueEl = h('section.pane.queue-pane', { 'aria-label': t('queue.title') });
  const mapEl = h('div.map', { testid: 'map' });
  const playbackEl = h('div.playback', { testid: 'playback' });
  const detailEl = h('section.pane.detail-pane', { 'aria-label': t('detail.title') });
  container.append(h('div.monitoring',
    h('div.col.col-queue', h('h2.pane-title', t('queue.title')), queueEl),
    h('div.col.col-map', mapEl, playbackEl),
    h('div.col.col-detail', detailEl)));

  const map = createMap(mapEl);
  let selected = null;
  let selectedCase = null;

  const overlay = new AlertOverlay(map);
  const devices = new DeviceLayer(map, {
    onClick: (p) => {
      const open = [...store.alerts.values()].filter((a) => a.open && (a.device === p.device || a.offender?.device === p.device || a.protected?.device === p.device)).sort(compareAlerts);
      if (open.length) location.hash = '#/alert/' + encodeURIComponent(open[0].id);
      else toast(t('map.no_open_alert', { device: p.device, case: p.case || '—' }));
    },
  });
  devices.setAll(store.positions.values());
  const playback = new Playback(map, playbackEl);
  const queue = new AlertQueue(queueEl, { onSelect: (id) => (location.hash = '#/alert/' + encodeURIComponent(id)) });
  const detail = new AlertDetail(detailEl, {
    toast,
    onPlayback: (id) => {
      const a = store.alerts.get(id);
      if (a) playback.load(a).then(() => setTimeout(() => map.invalidateSize(), 0));
    },
  });

  const redraw = frameBatch(() => {
    const a = selected && store.alerts.get(selected);
    if (a) overlay.show(a, selectedCase, store.positions, store.previous, false);
  });

  function parties(a) {
    return [a.offender?.device, a.protected?.device, a.device].filter(Boolean);
  }

  async function select(id) {
    const changed = id !== selected;
    selected = id;
    queue.select(id, false);
    detail.show(id);
    const a = id && store.alerts.get(id);
    if (!a) {
      overlay.clear();
      devices.setHighlight([]);
      return;
    }
    if (changed) {
      playback.stop();
      playbackEl.replaceChildren();
      selectedCase = null;
    }
    devices.setHighlight(parties(a));
    overlay.show(a, selectedCase, store.positions, store.previous, changed);
    try {
      const c = await getCase(a.case);
      if (selected === id) {
        selectedCase = c;
        overlay.show(store.alerts.get(id), c, store.positions, store.previous, false);
      }
    } catch {
      // The case may be gone; the parties are still shown.
    }
  }

  const offs = [
    on('position', (p) => {
      devices.set(p);
      if (selected) {
        const a = store.alerts.get(selected);
        if (a && parties(a).includes(p.device)) redraw();
      }
    }),
    on('positions', () => devices.setAll(store.positions.values())),
    on('alert', (rec) => {
      if (rec.id === selected) {
        detail.update();
        redraw();
      }
    }),
    on('alerts', () => {
      if (selected) {
        if (store.alerts.has(selected) && !detail.root) select(selected);
        else detail.update();
      }
    }),
    on('case', (id) => {
      const a = selected && store.alerts.get(selected);
      if (a && a.case === id) {
        selectedCase = null;
        select(selected);
      }
    }),
    on('reset', () => {
      devices.setAll(store.positions.values());
      if (selected) {
        const id = selected;
        selected = null;
        select(id);
      }
    }),
  ];

  const resize = () => map.invalidateSize();
  window.addEventListener('resize', resize);
  setTimeout(resize, 0);

  function update(r) {
    select(r.name === 'alert' ? r.arg : null);
  }
  update(route);

  return {
    update,
    unmount() {
      offs.forEach((off) => off());
      window.removeEventListener('resize', resize);
      queue.destroy();
      detail.destroy();
      playback.stop();
      overlay.destroy();
      devices.destroy();
      map.remove();
    },
  };
}
