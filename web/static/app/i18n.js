// Every visible string comes from /assets/i18n/{en,nl}.json. The language
// follows a toggle, remembered in localStorage, and defaults to the browser's.

const KEY = 'kordon.lang';
export const LANGS = ['en', 'nl'];
let current = 'en';
let strings = {};
const listeners = new Set();
/** Keys asked for but missing from the current language (for tests). */
export const missing = new Set();
window.__kordonMissingStrings = missing;

function initial() {
  const saved = localStorage.getItem(KEY);
  if (LANGS.includes(saved)) return saved;
  const browser = (navigator.languages && navigator.languages[0]) || navigator.language || 'en';
  return browser.toLowerCase().startsWith('nl') ? 'nl' : 'en';
}

async function load(code) {
  const response = await fetch(`/assets/i18n/${code}.json`, { credentials: 'same-origin' });
  if (!response.ok) throw new Error(`i18n ${code}: ${response.status}`);
  return response.json();
}

export async function initI18n() {
  current = initial();
  try {
    strings = await load(current);
  } catch (e) {
    current = 'en';
    strings = await load('en');
  }
  document.documentElement.lang = current;
}

export function lang() {
  return current;
}

export async function setLang(code) {
  if (!LANGS.includes(code) || code === current) return;
  strings = await load(code);
  current = code;
  localStorage.setItem(KEY, code);
  document.documentElement.lang = code;
  for (const fn of listeners) fn(code);
}

export function onLangChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** The string for `key` with {placeholders} filled from `vars`. */
export function t(key, vars, fallback) {
  let s = strings[key];
  if (s === undefined) {
    if (fallback !== undefined) return fallback;
    missing.add(key);
    s = key;
  }
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, name) => (vars[name] !== undefined && vars[name] !== null ? String(vars[name]) : m));
  return s;
}

export function has(key) {
  return strings[key] !== undefined;
}
