// Track playback of an alert: both tracks drawn, markers moving along them,
// a slider and play/pause at 1x, 10x or 60x.
import { get, enc } from './api.js';
import { t } from './i18n.js';
import { h, ms, fmtFull, fmtTime, fmtMetres, distanceM, clear } from './util.js';

const L = window.L;

function points(list) {
  if (!Array.isArray(list)) return [];
  return list
    .map((p) => ({
      t: ms(p.ts ?? p.t ?? p.at ?? p.time),
      lat: +(p.lat ?? p.latitude),
      lon: +(p.lon ?? p.lng ?? p.longitude),
      acc: +(p.acc_m ?? p.acc ?? p.accuracy_m ?? 0),
    }))
    .filter((p) => Number.isFinite(p.t) && Number.isFinite(p.lat) && Number.isFinite(p.lon))
    .sort((a, b) => a.t - b.t);
}

function track(role, value, device) {
  if (Array.isArray(value)) return { role, device, points: points(value) };
  if (value && typeof value === 'object') {
    return { role: value.role || role, device: value.device || device, points: points(value.points || value.fixes || value.track || value.positions) };
  }
  return null;
}

/** Accepts the shapes a playback body may reasonably take. */
export function normalizePlayback(data, alert) {
  let tracks = [];
  const list = Array.isArray(data) ? data : data && (data.tracks || data.devices);
  if (Array.isArray(list)) {
    tracks = list.map((x) => track(x.role, x, x.device));
  } else if (list && typeof list === 'object') {
    tracks = Object.entries(list).map(([device, v]) => track(alert && alert.offender && alert.offender.device === device ? 'offender' : 'protected', v, device));
  } else if (data && typeof data === 'object') {
    for (const role of ['offender', 'protected']) if (data[role]) tracks.push(track(role, data[role], alert && alert[role] && alert[role].device));
  }
  tracks = tracks.filter((x) => x && x.points.length);
  for (const tr of tracks) if (!tr.role) tr.role = alert && alert.offender && tr.device === alert.offender.device ? 'offender' : 'protected';
  const all = tracks.flatMap((x) => x.points.map((p) => p.t));
  const from = ms(data && data.from), to = ms(data && data.to);
  return {
    tracks,
    start: Number.isFinite(from) ? from : Math.min(...all),
    end: Number.isFinite(to) ? to : Math.max(...all),
    onset: ms((data && data.onset) || (alert && alert.onset)),
  };
}

function at(points, time) {
  if (!points.length || time < points[0].t) return null;
  let lo = 0, hi = points.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (points[mid].t <= time) lo = mid;
    else hi = mid - 1;
  }
  const a = points[lo], b = points[lo + 1];
  if (!b) return a;
  // Between two fixes he moved in a straight line, as far as we know.
  const f = (time - a.t) / (b.t - a.t || 1);
  return { t: time, lat: a.lat + (b.lat - a.lat) * f, lon: a.lon + (b.lon - a.lon) * f, acc: a.acc + (b.acc - a.acc) * f };
}

export class Playback {
  constructor(map, container) {
    this.map = map;
    this.container = container;
    this.group = L.layerGroup();
    this.playing = false;
    this.speed = 10;
    this.data = null;
    this.raf = 0;
  }

  async load(alert) {
    this.stop();
    this.alert = alert;
    clear(this.container);
    this.container.append(h('div.muted', t('playback.loading')));
    let body;
    try {
      body = await get(`/api/v1/alerts/${enc(alert.id)}/playback`);
    } catch (e) {
      clear(this.container);
      this.container.append(h('div.muted', e.missing ? t('playback.unavailable') : t('error.generic', { error: e.message })));
      return false;
    }
    if (this.alert !== alert) return false;
    this.data = normalizePlayback(body, alert);
    if (!this.data.tracks.length) {
      clear(this.container);
      this.container.append(h('div.muted', t('playback.empty')));
      return false;
    }
    this.time = this.data.start;
    this.render();
    this.drawTracks();
    this.seek(this.data.start);
    return true;
  }

  render() {
    clear(this.container);
    const d = this.data;
    this.button = h('button.btn.small', { type: 'button', testid: 'playback-play', onclick: () => (this.playing ? this.pause() : this.play()) }, t('playback.play'));
    this.slider = h('input.slider', {
      type: 'range', min: 0, max: Math.max(1, Math.round((d.end - d.start) / 1000)), step: 1, value: 0, testid: 'playback-slider',
      'aria-label': t('playback.slider'),
      oninput: () => this.seek(d.start + this.slider.value * 1000),
    });
    const speed = h('select.small', { testid: 'playback-speed', 'aria-label': t('playback.speed'), onchange: (e) => (this.speed = +e.target.value) },
      [1, 10, 60].map((s) => h('option', { value: s, selected: s === this.speed }, t('playback.x', { n: s }))));
    this.clock = h('span.mono.playback-clock');
    this.readout = h('span.muted.playback-readout');
    const onsetPct = Number.isFinite(d.onset) ? ((d.onset - d.start) / (d.end - d.start || 1)) * 100 : null;
    const track = h('div.slider-wrap', this.slider,
      onsetPct !== null && onsetPct >= 0 && onsetPct <= 100 ? h('span.onset-tick', { style: `left: ${onsetPct}%`, title: t('playback.onset') }) : null);
    const close = h('button.btn.small.ghost', { type: 'button', onclick: () => this.close() }, t('playback.close'));
    this.container.append(
      h('div.playback-row', this.button, speed, this.clock, close),
      track,
      h('div.playback-row', h('span.muted', fmtTime(d.start)), this.readout, h('span.muted', fmtTime(d.end))),
      h('div.legend', h('span.key.key-offender', t('role.offender')), h('span.key.key-protected', t('role.protected')), h('span.key.key-onset', t('playback.onset'))),
    );
  }

  drawTracks() {
    this.group.clearLayers().addTo(this.map);
    this.markers = [];
    const bounds = [];
    for (const tr of this.data.tracks) {
      const latlngs = tr.points.map((p) => [p.lat, p.lon]);
      bounds.push(...latlngs);
      L.polyline(latlngs, { pane: 'tracks', className: `track track-${tr.role}`, weight: 2.5, interactive: false }).addTo(this.group);
      const accuracy = L.circle(latlngs[0], { pane: 'tracks', radius: 1, className: `accuracy accuracy-${tr.role}`, weight: 1, interactive: false }).addTo(this.group);
      const marker = L.circleMarker(latlngs[0], { pane: 'tracks', radius: 7, weight: 3, className: `playback-marker role-${tr.role}` })
        .bindTooltip(`${t('role.' + tr.role)} ${tr.device || ''}`, { direction: 'top' })
        .addTo(this.group);
      const tag = () => marker._path && marker._path.setAttribute('data-playback-device', tr.device || '');
      marker.on('add', tag);
      tag();
      this.markers.push({ tr, marker, accuracy });
    }
    if (bounds.length) this.map.fitBounds(L.latLngBounds(bounds).pad(0.2), { maxZoom: 17, animate: false });
  }

  seek(time) {
    const d = this.data;
    if (!d) return;
    this.time = Math.max(d.start, Math.min(d.end, time));
    const here = {};
    for (const { tr, marker, accuracy } of this.markers) {
      const p = at(tr.points, this.time);
      const el = marker._path;
      if (!p) {
        if (el) el.style.display = 'none';
        if (accuracy._path) accuracy._path.style.display = 'none';
        continue;
      }
      if (el) el.style.display = '';
      if (accuracy._path) accuracy._path.style.display = '';
      marker.setLatLng([p.lat, p.lon]);
      accuracy.setLatLng([p.lat, p.lon]);
      accuracy.setRadius(Math.max(1, p.acc));
      here[tr.role] = p;
    }
    this.slider.value = Math.round((this.time - d.start) / 1000);
    this.clock.textContent = fmtFull(this.time);
    const parts = [];
    if (here.offender && here.protected) parts.push(t('playback.distance', { d: fmtMetres(distanceM(here.offender, here.protected)) }));
    if (Number.isFinite(d.onset)) parts.push(this.time < d.onset ? t('playback.before_onset') : t('playback.after_onset'));
    this.readout.textContent = parts.join(' · ');
  }

  play() {
    if (!this.data) return;
    if (this.time >= this.data.end) this.seek(this.data.start);
    this.playing = true;
    this.button.textContent = t('playback.pause');
    let last = performance.now();
    const step = (now) => {
      if (!this.playing) return;
      const dt = now - last;
      last = now;
      this.seek(this.time + dt * this.speed);
      if (this.time >= this.data.end) {
        this.pause();
        return;
      }
      this.raf = requestAnimationFrame(step);
    };
    this.raf = requestAnimationFrame(step);
  }

  pause() {
    this.playing = false;
    cancelAnimationFrame(this.raf);
    if (this.button) this.button.textContent = t('playback.play');
  }

  stop() {
    this.pause();
    this.group.clearLayers();
    this.group.remove();
    this.data = null;
  }

  close() {
    this.stop();
    clear(this.container);
    if (this.onClose) this.onClose();
  }
}
