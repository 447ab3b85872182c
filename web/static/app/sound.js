// A short beep (WebAudio, no file) for every new alert that asks for action.
// Muting is remembered in localStorage.

const KEY = 'kordon.muted';
let ctx = null;
let lastBeep = 0;
const listeners = new Set();

export function muted() {
  return localStorage.getItem(KEY) === '1';
}

export function setMuted(value) {
  localStorage.setItem(KEY, value ? '1' : '0');
  if (!value) unlock();
  for (const fn of listeners) fn(value);
}

export function onMuteChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Browsers start audio only after a gesture: call from any click. */
export function unlock() {
  try {
    if (!ctx) ctx = new (window.AudioContext || window.webkitAudioContext)();
    if (ctx.state === 'suspended') ctx.resume();
  } catch {
    ctx = null;
  }
}

/** Two tones for a breach, one for anything else. */
export function beep(urgent) {
  window.__kordonBeeps = (window.__kordonBeeps || 0) + 1;
  if (muted()) return;
  const now = performance.now();
  if (now - lastBeep < 400) return; // a burst of alerts is one sound
  lastBeep = now;
  try {
    if (!ctx) ctx = new (window.AudioContext || window.webkitAudioContext)();
    if (ctx.state === 'suspended') ctx.resume();
    const tones = urgent ? [880, 660, 880] : [740];
    let t0 = ctx.currentTime + 0.02;
    for (const f of tones) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = 'sine';
      osc.frequency.value = f;
      gain.gain.setValueAtTime(0.0001, t0);
      gain.gain.exponentialRampToValueAtTime(0.25, t0 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t0 + 0.18);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t0);
      osc.stop(t0 + 0.2);
      t0 += 0.22;
    }
  } catch {
    // No audio device: the row's colour still says it.
  }
}
