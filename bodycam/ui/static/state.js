// The console's shared state, the labels several views use, and the batched rendering.

export const SESSION_LABELS = { live: 'en direct', interrupted: 'liaison perdue', ended: 'terminée' };
export const BACKOFF_MIN = 500;
export const BACKOFF_MAX = 5000;

export const S = {
  user: null, running: false,
  alerts: new Map(), positions: new Map(), tracks: new Map(),
  selections: new Map(), health: new Map(), controls: new Map(),
  lastId: null, snapshotId: null,
  ws: null, backoff: BACKOFF_MIN, reconnectTimer: null,
  wallSession: null, grid: 2, tiles: [null, null, null, null],
  city: null, cameras: new Map(), view: null, full: null,
};

export function selectionOf(sid) {
  const list = S.selections.get(sid);
  return Array.isArray(list) ? list.filter((c) => c && c.camera_id) : [];
}

export const sessionState = (sid) => (S.alerts.get(sid) || {}).session_state;

// Batch DOM work: many events in a row give one render.
const dirty = new Set();
let renderPending = false;
export function invalidate(...parts) {
  parts.forEach((p) => dirty.add(p));
  if (renderPending) return;
  renderPending = true;
  // requestAnimationFrame does not run in a hidden tab; a timer does.
  if (document.hidden) setTimeout(flush, 100); else requestAnimationFrame(flush);
}

// Filled in by the entry module (console.js), which knows every view.
const renderers = {};
export function setRenderers(fns) {
  Object.assign(renderers, fns);
}

function flush() {
  renderPending = false;
  const parts = new Set(dirty);
  dirty.clear();
  for (const p of parts) {
    try { renderers[p](); } catch (err) { console.error('bodycam: render', p, err); }
  }
}
