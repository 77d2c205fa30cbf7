// Small helpers shared by the console's modules: DOM building, times, event ids, the JSON API call.
// Every piece of data reaches the page through textContent or setAttribute, never innerHTML.

const SVG_NS = 'http://www.w3.org/2000/svg';

export const $ = (id) => document.getElementById(id);

// ---------- small helpers ----------

export function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

export function svgEl(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

// Times are ISO 8601 strings from the gateway; accept epoch numbers too.
export function fmtTime(value) {
  if (value === null || value === undefined || value === '') return '--:--:--';
  const ms = typeof value === 'number' ? (value < 1e12 ? value * 1000 : value) : Date.parse(value);
  if (!Number.isFinite(ms)) return '--:--:--';
  const d = new Date(ms);
  return [d.getHours(), d.getMinutes(), d.getSeconds()]
    .map((n) => String(n).padStart(2, '0')).join(':');
}

export function timeValue(value) {
  const ms = typeof value === 'number' ? value : Date.parse(value);
  return Number.isFinite(ms) ? ms : 0;
}

// Event ids are "<milliseconds>-<sequence>"; NaN when either is not of that form.
export function compareIds(a, b) {
  const ma = /^(\d+)-(\d+)$/.exec(String(a));
  const mb = /^(\d+)-(\d+)$/.exec(String(b));
  if (!ma || !mb) return NaN;
  return (Number(ma[1]) - Number(mb[1])) || (Number(ma[2]) - Number(mb[2]));
}

export const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

export const validPoint = (p) => Array.isArray(p) && isNum(p[0]) && isNum(p[1]);

export async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  try {
    const resp = await fetch(path, init);
    let data = null;
    try { data = await resp.json(); } catch { /* 204 or not JSON */ }
    return { status: resp.status, body: data };
  } catch {
    return { status: 0, body: null };
  }
}

// French first; the gateway's own message (English, for the logs) follows as the detail.
const ERROR_LABELS = {
  0: 'Passerelle injoignable',
  401: 'Session expirée : reconnectez-vous',
  403: 'Non autorisé pour votre rôle',
  404: 'Introuvable',
  409: 'Action impossible dans l\u2019état actuel',
};
export const errorText = (r) => {
  const label = ERROR_LABELS[r.status] || `Erreur ${r.status}`;
  const detail = r.body && r.body.error;
  return detail ? `${label} (${detail})` : label;
};
