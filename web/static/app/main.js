// kordon's monitoring-room dashboard: boot, sign-in, routing, the top bar and
// the engine status banners.
import { initI18n, t, lang, setLang, onLangChange } from './i18n.js';
import { api, get, setCsrf, onUnauthorized, ApiError } from './api.js';
import { h, clear } from './util.js';
import { store, on, startStream, stopStream, startHealth, loadAlerts, loadPositions, resetStore } from './store.js';
import { muted, setMuted, onMuteChange, unlock, beep } from './sound.js';
import { level } from './util.js';
import * as monitoring from './view-monitoring.js';
import * as casePage from './view-case.js';
import * as report from './view-report.js';
import * as police from './view-police.js';
import * as intake from './view-intake.js';

const ROUTES = {
  queue: { view: monitoring, roles: ['monitoring'] },
  alert: { view: monitoring, roles: ['monitoring'] },
  case: { view: casePage, roles: ['monitoring', 'police', 'admin'] },
  report: { view: report, roles: ['monitoring'] },
  police: { view: police, roles: ['police'] },
  intake: { view: intake, roles: ['admin'] },
};
const HOME = { monitoring: '#/queue', police: '#/police', admin: '#/intake' };
const NAV = {
  monitoring: [['#/queue', 'nav.queue'], ['#/report', 'nav.report']],
  police: [['#/police', 'nav.police']],
  admin: [['#/intake', 'nav.intake']],
};

const shell = {};
let current = null; // {name, view, instance}

// ---- toasts -----------------------------------------------------------------------

export function toast(message, kind = 'info') {
  const node = h('div.toast.' + kind, { role: kind === 'error' ? 'alert' : 'status' }, message);
  shell.toasts.append(node);
  setTimeout(() => node.classList.add('fade'), 4500);
  setTimeout(() => node.remove(), 5200);
}
window.__kordonToast = toast;

// ---- banners -------------------------------------------------------------------------

function renderBanners() {
  const s = shell.status;
  const health = store.health;
  const problems = health && Array.isArray(health.problems) ? health.problems : [];
  let text = null;
  if (store.healthError) text = t('banner.unreachable');
  else if (health && health.status && health.status !== 'ok') text = t('banner.degraded');
  s.hidden = !text;
  s.dataset.state = text ? (store.healthError ? 'unreachable' : 'degraded') : 'ok';
  clear(s);
  if (text) {
    s.append(h('strong', text));
    if (problems.length) s.append(h('ul', problems.map((p) => h('li', p))));
  }
  const lost = store.session && store.stream === 'lost';
  shell.stream.hidden = !lost;
  shell.stream.dataset.state = store.stream;
  shell.stream.textContent = lost ? t('banner.stream_lost') : '';
}

function speakerIcon(off) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('width', '14');
  svg.setAttribute('height', '14');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'icon');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', off ? 'M2 6h3l4-3v10l-4-3H2z M11 6l4 4 M15 6l-4 4' : 'M2 6h3l4-3v10l-4-3H2z M11.5 5.5a3.5 3.5 0 0 1 0 5 M13 3.5a6 6 0 0 1 0 9');
  svg.append(path);
  return svg;
}

// ---- top bar -----------------------------------------------------------------------------

function renderTopbar() {
  const bar = clear(shell.topbar);
  const session = store.session;
  bar.append(h('a.brand', { href: session ? HOME[session.role] || '#/' : '#/', 'aria-label': t('app.name') }, h('span.brand-mark', '◉'), h('span.brand-name', t('app.name'))));
  const nav = h('nav.nav');
  if (session) {
    for (const [href, key] of NAV[session.role] || []) {
      nav.append(h('a', { href, class: location.hash.startsWith(href) ? 'active' : '' }, t(key)));
    }
  }
  bar.append(nav, h('span.spacer'));
  if (session) {
    bar.append(h('span.who', { title: t('top.signed_in_as') }, session.name, h('span.role', t('role_name.' + session.role, null, session.role))));
    if (session.role === 'monitoring' || session.role === 'police') {
      const m = muted();
      bar.append(h('button.btn.small.ghost', {
        type: 'button', testid: 'mute-toggle', 'aria-pressed': String(m), title: t(m ? 'top.unmute' : 'top.mute'),
        onclick: () => setMuted(!muted()),
      }, speakerIcon(m), h('span.long', m ? t('top.sound_off') : t('top.sound_on'))));
    }
  }
  const other = lang() === 'nl' ? 'en' : 'nl';
  bar.append(h('button.btn.small.ghost', { type: 'button', testid: 'lang-toggle', title: t('top.language'), lang: other, onclick: () => setLang(other) }, h('span.long', t('top.lang_other')), h('span.short', t('top.lang_other_short'))));
  if (session) bar.append(h('button.btn.small.ghost', { type: 'button', testid: 'signout', onclick: signOut }, t('top.sign_out')));
}

// ---- sign-in --------------------------------------------------------------------------------

function showSignIn(message) {
  unmountView();
  document.body.dataset.view = 'signin';
  const view = clear(shell.view);
  const token = h('input', { type: 'password', id: 'signin-token', testid: 'signin-token', autocomplete: 'current-password', required: true, autofocus: true, 'aria-describedby': 'signin-help' });
  const error = h('div.form-error', { role: 'alert', testid: 'signin-error' }, message || '');
  const submit = h('button.btn.primary', { type: 'submit', testid: 'signin-submit' }, t('signin.submit'));
  const form = h('form.signin-card', {
    onsubmit: async (e) => {
      e.preventDefault();
      unlock();
      error.textContent = '';
      if (!token.value.trim()) {
        error.textContent = t('signin.empty');
        return;
      }
      submit.disabled = true;
      try {
        const session = await api('POST', '/api/v1/session', { token: token.value.trim() }, { allow401: true });
        token.value = '';
        signedIn(session);
      } catch (err) {
        error.textContent = err instanceof ApiError && (err.status === 401 || err.status === 403) ? t('signin.refused')
          : err instanceof ApiError && err.missing ? t('signin.unavailable') : t('error.generic', { error: err.message });
      } finally {
        submit.disabled = false;
      }
    },
  },
  h('h1', t('signin.title')),
  h('p.muted', { id: 'signin-help' }, t('signin.help')),
  h('label', { for: 'signin-token' }, t('signin.token')),
  token, error, submit);
  view.append(h('div.signin', form));
  renderTopbar();
  renderBanners();
  setTimeout(() => token.focus(), 0);
}

function signedIn(session) {
  store.session = session;
  setCsrf(session.csrf);
  renderTopbar();
  startStream();
  loadAlerts().catch(() => {});
  loadPositions().catch(() => {});
  const route = parseHash();
  if (route && ROUTES[route.name] && ROUTES[route.name].roles.includes(session.role)) {
    route_();
  } else {
    const target = HOME[session.role] || '#/queue';
    if (location.hash !== target) location.hash = target;
    else route_();
  }
}

async function signOut() {
  try {
    await api('DELETE', '/api/v1/session', undefined, { allow401: true });
  } catch {
    // Gone already.
  }
  endSession();
}

function endSession(message) {
  stopStream();
  resetStore();
  store.session = null;
  setCsrf(null);
  showSignIn(message);
}

// ---- routing -------------------------------------------------------------------------------

function parseHash() {
  const m = location.hash.match(/^#\/([a-z]+)(?:\/(.*))?$/);
  if (!m) return null;
  return { name: m[1], arg: m[2] ? decodeURIComponent(m[2]) : null };
}

function unmountView() {
  if (current && current.instance && current.instance.unmount) current.instance.unmount();
  current = null;
}

function route_() {
  if (!store.session) return;
  const route = parseHash();
  const entry = route && ROUTES[route.name];
  if (!entry || !entry.roles.includes(store.session.role)) {
    location.hash = HOME[store.session.role] || '#/queue';
    return;
  }
  renderTopbar();
  document.body.dataset.view = route.name;
  if (current && current.view === entry.view && current.instance.update) {
    current.name = route.name;
    current.instance.update(route);
    return;
  }
  unmountView();
  const container = clear(shell.view);
  current = { name: route.name, view: entry.view, instance: entry.view.mount(container, route, { toast }) };
}

function rerender() {
  renderTopbar();
  renderBanners();
  if (!store.session) {
    showSignIn();
    return;
  }
  unmountView();
  route_();
}

// ---- boot -----------------------------------------------------------------------------------

async function boot() {
  await initI18n();
  document.title = t('app.title');
  const root = document.getElementById('app');
  clear(root);
  shell.status = h('div.banner.banner-red', { testid: 'status-banner', role: 'alert', hidden: true });
  shell.stream = h('div.banner.banner-amber', { testid: 'stream-banner', role: 'status', hidden: true });
  shell.topbar = h('header.topbar');
  shell.view = h('main.view', { id: 'view' });
  shell.toasts = h('div.toasts', { 'aria-live': 'polite' });
  root.append(h('div.banners', shell.status, shell.stream), shell.topbar, shell.view, shell.toasts);

  onUnauthorized(() => {
    if (store.session) endSession(t('signin.expired'));
  });
  on('health', renderBanners);
  on('stream', renderBanners);
  on('actionable', (rec) => beep(level(rec.kind) === 'breach'));
  onMuteChange(renderTopbar);
  onLangChange(() => {
    document.title = t('app.title');
    rerender();
  });
  document.addEventListener('pointerdown', unlock, { once: true });
  window.addEventListener('hashchange', route_);
  startHealth();
  renderBanners();

  let session = null;
  try {
    session = await get('/api/v1/session', { allow401: true });
  } catch {
    session = null;
  }
  if (session && session.role) signedIn(session);
  else showSignIn();
}

boot().catch((e) => {
  console.error(e);
  document.getElementById('app').textContent = 'kordon: ' + e.message;
});
