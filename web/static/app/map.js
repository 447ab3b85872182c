// Leaflet maps on the offline basemap (no tiles): live device markers, a
// case's zones and contact-ban rings, and the parties of an alert.
import { t, onLangChange } from './i18n.js';
import { frameBatch, now as nowMs, ms, fmtDuration, fmtMetres, distanceM, bearing } from './util.js';

const L = window.L;
const CENTER = [51.915, 4.48];
let basemapData = null;

function loadBasemap() {
  if (!basemapData) {
    basemapData = fetch('/assets/basemap/rotterdam.geojson', { credentials: 'same-origin' })
      .then((r) => (r.ok ? r.json() : null))
      .catch(() => null);
  }
  return basemapData;
}

function centroid(ring) {
  let x = 0, y = 0;
  for (const [lon, lat] of ring) {
    x += lon;
    y += lat;
  }
  return [y / ring.length, x / ring.length];
}

/** A map with the basemap, panes for zones and devices, and the attribution. */
export function createMap(el, options = {}) {
  const renderer = L.svg({ padding: 0.3 });
  const map = L.map(el, {
    center: options.center || CENTER,
    zoom: options.zoom || 12,
    minZoom: 9,
    maxZoom: 19,
    renderer,
    zoomSnap: 0.5,
    attributionControl: true,
    worldCopyJump: false,
  });
  map.attributionControl.setPrefix('<a href="https://leafletjs.com" target="_blank" rel="noopener">Leaflet</a>');
  let attribution = t('map.attribution');
  map.attributionControl.addAttribution(attribution);
  const offLang = onLangChange(() => {
    map.attributionControl.removeAttribution(attribution);
    attribution = t('map.attribution');
    map.attributionControl.addAttribution(attribution);
  });
  for (const [name, z] of [['basemap', 200], ['zones', 380], ['tracks', 420], ['devices', 450], ['parties', 620]]) {
    map.createPane(name).style.zIndex = z;
  }
  map.getPane('basemap').style.pointerEvents = 'none';
  const labels = L.layerGroup();
  let removed = false;
  map.on('unload', () => (removed = true));
  loadBasemap().then((data) => {
    if (!data || removed) return;
    L.geoJSON(data, {
      pane: 'basemap',
      interactive: false,
      style: (f) => {
        const p = f.properties || {};
        return p.layer === 'district'
          ? { className: 'bm-district', weight: 1, fill: true }
          : { className: `bm-road bm-${p.class}`, weight: { motorway: 3, trunk: 2.5, primary: 2, secondary: 1.5, tertiary: 1 }[p.class] || 1, fill: false };
      },
    }).addTo(map);
    for (const f of data.features) {
      if (f.properties.layer !== 'district') continue;
      const polys = f.geometry.type === 'Polygon' ? [f.geometry.coordinates] : f.geometry.coordinates;
      const biggest = polys.reduce((a, b) => (b[0].length > a[0].length ? b : a));
      L.marker(centroid(biggest[0]), {
        pane: 'basemap',
        interactive: false,
        keyboard: false,
        icon: L.divIcon({ className: 'bm-label', html: '', iconSize: null }),
      })
        .on('add', (e) => {
          const node = e.target.getElement();
          if (node) node.textContent = f.properties.name;
        })
        .addTo(labels);
    }
    const toggleLabels = () => {
      if (map.getZoom() >= 12) labels.addTo(map);
      else labels.remove();
    };
    map.on('zoomend', toggleLabels);
    toggleLabels();
  });
  map.on('remove', offLang);
  return map;
}

/** Where a live position stands: its age in seconds. */
export function ageS(p) {
  // A clock ahead (or a simulated day) must not show a negative age.
  return Math.max(0, (nowMs() - ms(p.ts)) / 1000);
}

// ---- live devices -------------------------------------------------------------

/**
 * One circleMarker per device on the map's SVG renderer, reused and moved in
 * place; updates are batched per animation frame.
 */
export class DeviceLayer {
  constructor(map, { onClick, filter } = {}) {
    this.map = map;
    this.group = L.layerGroup().addTo(map);
    this.markers = new Map();
    this.pending = new Map();
    this.onClick = onClick;
    this.filter = filter || (() => true);
    this.highlight = new Set();
    this.schedule = frameBatch(() => this.flush());
    this.staleTimer = setInterval(() => this.markStale(), 10000);
  }

  set(p) {
    this.pending.set(p.device, p);
    this.schedule();
  }

  setAll(positions) {
    for (const p of positions) this.pending.set(p.device, p);
    this.schedule();
  }

  flush() {
    if (!this.map._loaded) return;
    for (const p of this.pending.values()) {
      if (!Number.isFinite(p.lat) || !Number.isFinite(p.lon)) continue;
      let m = this.markers.get(p.device);
      if (!this.filter(p)) {
        if (m) {
          m.remove();
          this.markers.delete(p.device);
        }
        continue;
      }
      if (!m) {
        const role = p.role === 'protected' ? 'protected' : 'offender';
        m = L.circleMarker([p.lat, p.lon], {
          pane: 'devices',
          radius: role === 'offender' ? 4.5 : 4,
          weight: 1.5,
          fillOpacity: 0.9,
          className: `device device-${String(p.device).replace(/\s/g, '_')} role-${role}`,
          bubblingMouseEvents: false,
        });
        m.bindTooltip(() => this.tooltip(m), { direction: 'top', offset: [0, -4] });
        m.on('click', () => this.onClick && this.onClick(m.position));
        m.on('add', () => {
          if (m._path) {
            m._path.setAttribute('data-device', p.device);
            m._path.setAttribute('data-testid', 'marker');
          }
        });
        this.markers.set(p.device, m);
        m.position = p;
        m.addTo(this.group);
      } else {
        m.setLatLng([p.lat, p.lon]);
      }
      m.position = p;
      if (m._path) {
        m._path.classList.toggle('stale', ageS(p) > 300);
        m._path.classList.toggle('selected', this.highlight.has(p.device));
      }
    }
    this.pending.clear();
  }

  tooltip(m) {
    const p = m.position;
    return `${p.device} · ${p.case || ''}<br>${t('map.age', { age: fmtDuration(ageS(p)) })} · ±${fmtMetres(p.acc_m)}`;
  }

  markStale() {
    for (const m of this.markers.values()) if (m._path) m._path.classList.toggle('stale', ageS(m.position) > 300);
  }

  setHighlight(devices) {
    for (const id of this.highlight) this.markers.get(id)?._path?.classList.remove('selected');
    this.highlight = new Set(devices);
    for (const id of this.highlight) this.markers.get(id)?._path?.classList.add('selected');
  }

  refilter(positions) {
    for (const p of positions) this.pending.set(p.device, p);
    this.schedule();
  }

  destroy() {
    clearInterval(this.staleTimer);
    this.group.remove();
    this.markers.clear();
  }
}

// ---- zones ------------------------------------------------------------------------

const ll = ([lon, lat]) => [lat, lon];

function geometryLayers(geometry, style) {
  if (!geometry) return [];
  switch (geometry.type) {
    case 'Point':
      if (!Array.isArray(geometry.coordinates) || !(geometry.radius_m > 0)) return [];
      return [L.circle(ll(geometry.coordinates), { ...style, radius: geometry.radius_m })];
    case 'Polygon':
      return [L.polygon(geometry.coordinates.map((r) => r.map(ll)), style)];
    case 'MultiPolygon':
      return [L.polygon(geometry.coordinates.map((p) => p.map((r) => r.map(ll))), style)];
    default:
      return [];
  }
}

function orderActive(order, now) {
  const from = ms(order.valid_from), until = ms(order.valid_until);
  return !(from > now) && !(until <= now);
}

/**
 * Draws a case's zones into `group`: exclusion zones red, inclusion zones
 * (curfews, area obligations) green, warning buffers of circles dashed, and
 * contact-ban rings around the protected person's position when known
 * (`protectedAt(personId)` gives {lat, lon} or null).
 */
export function drawZones(group, caseFile, protectedAt) {
  const layers = [];
  if (!caseFile || !Array.isArray(caseFile.orders)) return layers;
  const now = nowMs();
  for (const order of caseFile.orders) {
    const rule = order.rule || {};
    const inactive = orderActive(order, now) ? '' : ' inactive';
    const label = `${order.id} · ${t('rule.' + rule.type, null, rule.type || '')}`;
    let made = [];
    if (rule.type === 'exclusion_zone') {
      made = geometryLayers(rule.geometry, { pane: 'zones', className: 'zone zone-exclusion' + inactive, weight: 2 });
      if (rule.warning_buffer_m > 0 && rule.geometry && rule.geometry.type === 'Point' && rule.geometry.radius_m > 0) {
        made.push(L.circle(ll(rule.geometry.coordinates), { pane: 'zones', className: 'zone zone-buffer' + inactive, weight: 1, radius: rule.geometry.radius_m + rule.warning_buffer_m, fill: false }));
      }
    } else if (rule.type === 'inclusion_zone') {
      made = geometryLayers(rule.geometry, { pane: 'zones', className: 'zone zone-inclusion' + inactive, weight: 2 });
    } else if (rule.type === 'contact_ban' && protectedAt) {
      const at = protectedAt(rule.protected);
      if (at && Number.isFinite(at.lat)) {
        made = [
          L.circle([at.lat, at.lon], { pane: 'zones', className: 'zone ban-warning' + inactive, weight: 1.5, radius: rule.warning_radius_m, fill: false }),
          L.circle([at.lat, at.lon], { pane: 'zones', className: 'zone ban-alarm' + inactive, weight: 2, radius: rule.alarm_radius_m }),
        ];
      }
    }
    for (const layer of made) {
      layer.bindTooltip(label, { sticky: true });
      layer.addTo(group);
      layers.push(layer);
    }
  }
  return layers;
}

/** The bounds of every layer in a group, or null. */
export function boundsOf(layers) {
  let b = null;
  for (const l of layers) {
    const lb = l.getBounds ? l.getBounds() : l.getLatLng ? L.latLngBounds([l.getLatLng()]) : null;
    if (!lb || !lb.isValid()) continue;
    b = b ? b.extend(lb) : L.latLngBounds(lb.getSouthWest(), lb.getNorthEast());
  }
  return b;
}

// ---- the parties of an alert -------------------------------------------------------

function arrowIcon(deg) {
  return L.divIcon({
    className: 'heading-arrow',
    iconSize: [26, 26],
    iconAnchor: [13, 13],
    html: `<svg viewBox="0 0 26 26" width="26" height="26" style="transform: rotate(${deg.toFixed(0)}deg)"><path d="M13 1 L20 17 L13 13 L6 17 Z"/></svg>`,
  });
}

function partyIcon(role) {
  return L.divIcon({ className: `party party-${role}`, iconSize: [16, 16], iconAnchor: [8, 8], html: '<span></span>' });
}

/**
 * The selected alert on a map: both parties with accuracy circles and the age
 * of their positions, the distance between them, the offender's direction,
 * and the case's zones and contact-ban rings.
 */
export class AlertOverlay {
  constructor(map) {
    this.map = map;
    this.zones = L.layerGroup().addTo(map);
    this.parties = L.layerGroup().addTo(map);
    this.alert = null;
    this.caseFile = null;
    this.labels = [];
    this.timer = setInterval(() => this.refreshLabels(), 1000);
  }

  /** `positions` maps a device to its latest live position (may be empty). */
  show(alert, caseFile, positions, previous, fit) {
    this.alert = alert;
    this.caseFile = caseFile;
    this.positions = positions;
    this.previous = previous;
    this.draw(fit);
  }

  clear() {
    this.alert = null;
    this.zones.clearLayers();
    this.parties.clearLayers();
    this.labels = [];
  }

  /** The party's position: the live one when newer than the alert's. */
  party(role) {
    const a = this.alert;
    const fromAlert = a && a[role];
    const device = fromAlert && fromAlert.device;
    const live = device && this.positions && this.positions.get(device);
    if (live && (!fromAlert || ms(live.ts) > ms(fromAlert.ts))) {
      return { device, lat: live.lat, lon: live.lon, acc: live.acc_m, ts: live.ts, heading: live.heading_deg, speed: live.speed_mps, live: true };
    }
    if (fromAlert && Number.isFinite(fromAlert.lat)) return { ...fromAlert, acc: fromAlert.acc ?? fromAlert.acc_m };
    return null;
  }

  draw(fit) {
    this.zones.clearLayers();
    this.parties.clearLayers();
    this.labels = [];
    const a = this.alert;
    if (!a) return;
    const off = this.party('offender');
    const prot = this.party('protected');
    const caseFile = this.caseFile;
    const protectedAt = (personId) => {
      if (!caseFile) return null;
      const person = (caseFile.protected || []).find((p) => p.id === personId);
      if (!person || !person.device) return null;
      if (prot && prot.device === person.device) return prot;
      const live = this.positions && this.positions.get(person.device);
      return live || null;
    };
    const zoneLayers = drawZones(this.zones, caseFile, protectedAt);
    const partyLayers = [];
    // Each label on the side away from the other party, so that they
    // never cross: he is labelled east of himself when he is east of her.
    const heIsEast = !(off && prot) || off.lon >= prot.lon;
    const side = (role) => ((role === 'offender') === heIsEast ? 'right' : 'left');
    for (const [role, p] of [['offender', off], ['protected', prot]]) {
      if (!p) continue;
      if (p.acc > 0) {
        partyLayers.push(L.circle([p.lat, p.lon], { pane: 'parties', radius: p.acc, className: `accuracy accuracy-${role}`, weight: 1, interactive: false }).addTo(this.parties));
      }
      const marker = L.marker([p.lat, p.lon], { pane: 'parties', icon: partyIcon(role), keyboard: false, zIndexOffset: role === 'offender' ? 100 : 0 })
        .bindTooltip('', { permanent: true, direction: side(role), className: `party-label party-label-${role}`, offset: [side(role) === 'right' ? 8 : -8, 0] })
        .addTo(this.parties);
      const tag = () => {
        const el = marker.getElement();
        if (el) {
          el.dataset.party = role;
          el.dataset.partyDevice = p.device;
        }
      };
      marker.on('add', tag);
      tag();
      this.labels.push({ marker, p, role });
      partyLayers.push(marker);
    }
    if (off && prot) {
      const line = L.polyline([[off.lat, off.lon], [prot.lat, prot.lon]], { pane: 'parties', className: 'distance-line', weight: 1.5, dashArray: '4 4', interactive: false }).addTo(this.parties);
      const d = distanceM(off, prot);
      line.bindTooltip(fmtMetres(d), { permanent: true, direction: 'center', className: 'distance-label' });
    }
    if (off) {
      let heading = Number.isFinite(off.heading) ? off.heading : null;
      if (heading === null && off.live && this.previous) {
        const prev = this.previous.get(off.device);
        if (prev && distanceM(prev, off) > 3) heading = bearing(prev, off);
      }
      if (heading !== null) {
        // The arrow sits a little ahead of him, in the direction he moves.
        const z = this.map.getZoom();
        const ahead = 26 * (156543 * Math.cos((off.lat * Math.PI) / 180)) / 2 ** z; // ~26 px in metres
        const dLat = (ahead * Math.cos((heading * Math.PI) / 180)) / 111320;
        const dLon = (ahead * Math.sin((heading * Math.PI) / 180)) / (111320 * Math.cos((off.lat * Math.PI) / 180));
        L.marker([off.lat + dLat, off.lon + dLon], { pane: 'parties', icon: arrowIcon(heading), interactive: false, keyboard: false }).addTo(this.parties);
      }
    }
    this.refreshLabels();
    if (fit) {
      const b = boundsOf(partyLayers.length ? partyLayers : zoneLayers);
      if (b) this.map.fitBounds(b.pad(0.6), { maxZoom: 16, animate: false });
    }
  }

  refreshLabels() {
    for (const { marker, p, role } of this.labels) {
      const age = fmtDuration(Math.max(0, (nowMs() - ms(p.ts)) / 1000));
      marker.setTooltipContent(`${t('role.' + role)} ${p.device}<br>${t('map.age', { age })} · ±${fmtMetres(p.acc)}`);
    }
  }

  destroy() {
    clearInterval(this.timer);
    this.zones.remove();
    this.parties.remove();
  }
}
