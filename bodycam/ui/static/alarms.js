// The alarm list: one entry per alert, the actions on it (ack, dispatch, close), the beep for a new one.

import { $, el, fmtTime, timeValue, isNum, api, errorText } from './util.js';
import { S, SESSION_LABELS, invalidate } from './state.js';
import { salvo } from './wall.js';

const STATE_LABELS = {
  nouvelle: 'Nouvelle', prise_en_compte: 'Prise en compte',
  renforts_envoyes: 'Renforts envoyés', cloturee: 'Clôturée',
};
const STATE_RANK = { nouvelle: 0, prise_en_compte: 1, renforts_envoyes: 2, cloturee: 3 };
// The three actions on an alert, and the states each one may start from.
const ACTIONS = [
  { op: 'ack', testid: 'btn-ack', label: 'Prendre en compte', from: ['nouvelle'] },
  { op: 'dispatch', testid: 'btn-dispatch', label: 'Renforts envoyés',
    from: ['nouvelle', 'prise_en_compte'] },
  { op: 'close', testid: 'btn-close', label: 'Clôturer',
    from: ['nouvelle', 'prise_en_compte', 'renforts_envoyes'] },
];

// ---------- alarms ----------

const canAct = () => !!S.user && S.user.role !== 'police_nationale';

export function onAlert(a, live) {
  if (!a || !a.session_id) return;
  const sid = a.session_id;
  const prev = S.alerts.get(sid);
  // States only move forward: an older copy (an action's answer racing an event) is stale.
  if (prev && (STATE_RANK[a.state] ?? 0) < (STATE_RANK[prev.state] ?? 0)) return;
  S.alerts.set(sid, a);
  if (!prev && live && a.state === 'nouvelle') {
    beep();
    salvo(sid);
  }
  invalidate('alerts', 'wall', 'map');
}

const alertEls = new Map(); // session id → { li, refs }

function compareAlerts(a, b) {
  const closed = (a.state === 'cloturee') - (b.state === 'cloturee');
  return closed || timeValue(b.raised_at) - timeValue(a.raised_at)
    || String(a.session_id).localeCompare(String(b.session_id));
}

export function renderAlerts() {
  const list = $('alert-list');
  const sorted = [...S.alerts.values()].sort(compareAlerts);
  for (const a of sorted) {
    if (!alertEls.has(a.session_id)) alertEls.set(a.session_id, createAlertEl(a.session_id));
    updateAlertEl(alertEls.get(a.session_id), a);
  }
  for (const [sid, e] of alertEls) {
    if (!S.alerts.has(sid)) { e.li.remove(); alertEls.delete(sid); }
  }
  // Move elements only when the order changed (a move would cancel a click under way).
  const wanted = sorted.map((a) => alertEls.get(a.session_id).li);
  const current = [...list.children];
  if (wanted.length !== current.length || wanted.some((li, i) => li !== current[i])) {
    list.append(...wanted);
  }
  $('no-alerts').hidden = sorted.length > 0;
}

function createAlertEl(sid) {
  const li = el('li', { 'data-testid': 'alert', 'data-session-id': sid, class: 'alert' });
  const refs = {
    state: el('span', { class: 'badge', 'data-testid': 'alert-state' }),
    officer: el('strong', { class: 'officer', 'data-testid': 'alert-officer' }),
    time: el('span', { class: 'time', 'data-testid': 'alert-time' }),
    device: el('div', { class: 'device', 'data-testid': 'alert-device' }),
    address: el('div', { class: 'address', 'data-testid': 'alert-address' }),
    battery: el('span', { class: 'battery', 'data-testid': 'alert-battery' }),
    session: el('span', { class: 'session', 'data-testid': 'alert-session' }),
    history: el('ul', { class: 'history', 'data-testid': 'alert-history' }),
    error: el('p', { class: 'error', 'data-testid': 'alert-error', role: 'alert' }),
    buttons: {},
  };
  const head = el('div', { class: 'alert-head' });
  head.append(refs.officer, refs.time);
  const status = el('div', { class: 'alert-status' });
  status.append(refs.state, refs.session, refs.battery);
  li.append(head, status, refs.device, refs.address, refs.history);
  if (canAct()) {
    const row = el('div', { class: 'alert-actions' });
    for (const action of ACTIONS) {
      const btn = el('button', { type: 'button', 'data-testid': action.testid }, action.label);
      btn.addEventListener('click', (ev) => { ev.stopPropagation(); act(sid, action.op, refs); });
      refs.buttons[action.op] = btn;
      row.append(btn);
    }
    li.append(row);
  }
  li.append(refs.error);
  li.tabIndex = 0;
  li.addEventListener('click', () => salvo(sid));
  li.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' && ev.target === li) salvo(sid); });
  return { li, refs };
}

function updateAlertEl({ li, refs }, a) {
  const state = STATE_LABELS[a.state] ? a.state : 'nouvelle';
  if (li.dataset.state && li.dataset.state !== a.state) refs.error.textContent = ''; // moved on
  li.dataset.state = a.state || '';
  li.className = `alert state-${state} session-${a.session_state || 'unknown'}`
    + (a.session_id === S.wallSession ? ' on-wall' : '');
  refs.state.textContent = STATE_LABELS[a.state] || String(a.state || '?');
  refs.officer.textContent = a.officer || a.device_id || '?';
  refs.time.textContent = fmtTime(a.raised_at);
  refs.device.textContent = `Caméra ${a.device_id || '?'}`;
  const pos = S.positions.get(a.session_id);
  refs.address.textContent = a.address || (pos && pos.address) || 'position inconnue';
  const battery = a.battery_percent;
  refs.battery.textContent = isNum(battery) ? `🔋 ${Math.round(battery)} %` : 'batterie ?';
  refs.battery.classList.toggle('low', isNum(battery) && battery < 20);
  refs.session.textContent = SESSION_LABELS[a.session_state] || String(a.session_state || '');
  const items = (Array.isArray(a.actions) ? a.actions : []).map((x) => el('li', {},
    `${STATE_LABELS[x && x.state] || (x && x.state) || '?'} par ${(x && x.user) || '?'} à ${fmtTime(x && x.at)}`));
  refs.history.replaceChildren(...items);
  for (const action of ACTIONS) {
    const btn = refs.buttons[action.op];
    if (btn && !btn.classList.contains('busy')) btn.disabled = !action.from.includes(a.state);
  }
}

async function act(sid, op, refs) {
  const btn = refs.buttons[op];
  refs.error.textContent = '';
  btn.classList.add('busy');
  btn.disabled = true;
  const r = await api('POST', `/api/v1/alerts/${encodeURIComponent(sid)}/${op}`);
  btn.classList.remove('busy');
  if (r.status === 200 && r.body) onAlert(r.body, false);
  else refs.error.textContent = errorText(r);
  invalidate('alerts');
}

// A short beep for a new alert; autoplay rules may forbid it: then silence.
let audioCtx = null;
export function unlockAudio() {
  try {
    audioCtx = audioCtx || new AudioContext();
    audioCtx.resume().catch(() => {});
  } catch { /* no WebAudio */ }
}

function beep() {
  try {
    unlockAudio();
    const t0 = audioCtx.currentTime;
    const osc = audioCtx.createOscillator();
    const gain = audioCtx.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.25, t0);
    gain.gain.exponentialRampToValueAtTime(0.001, t0 + 0.4);
    osc.connect(gain).connect(audioCtx.destination);
    osc.start(t0);
    osc.stop(t0 + 0.4);
  } catch { /* ignored */ }
}
