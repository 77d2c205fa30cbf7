// bodycam — the CSU operator console (alarms, video wall, map): entry module (boot, login, live updates).
// Plain ES modules, no framework, no build step: the contract with the gateway is docs/console.md.
// Every piece of data reaches the page through textContent or setAttribute, never innerHTML.

import { $, el, compareIds, isNum, timeValue, validPoint, api, errorText } from './util.js';
import { S, BACKOFF_MIN, BACKOFF_MAX, invalidate, setRenderers } from './state.js';
import { onAlert, renderAlerts, unlockAudio } from './alarms.js';
import {
  renderWall, destroyTile, salvo, refreshWallCameras, setGrid, deleteView, updateTiles,
} from './wall.js';
import { loadCity, renderMap, setupMapInput, centerMap } from './map.js';
import { setupRecordings, showRecordingsButton, closeRecordings } from './recordings.js';

const ROLE_LABELS = {
  operator: 'opérateur', supervisor: 'superviseur', police_nationale: 'police nationale',
};
const TRACK_MAX = 500;
const CONSOLE_ROLES = ['operator', 'supervisor', 'police_nationale'];

// ---------- login / logout ----------

function showLogin(message) {
  $('console').hidden = true;
  $('login').hidden = false;
  $('login-form').querySelector('[data-testid="login-error"]').textContent = message || '';
  $('login-form').querySelector('[data-testid="login-password"]').value = '';
  $('login-form').querySelector('[data-testid="login-name"]').focus();
}

async function onLoginSubmit(ev) {
  ev.preventDefault();
  const form = $('login-form');
  const errorEl = form.querySelector('[data-testid="login-error"]');
  const name = form.querySelector('[data-testid="login-name"]').value.trim();
  const password = form.querySelector('[data-testid="login-password"]').value;
  const submit = form.querySelector('[data-testid="login-submit"]');
  errorEl.textContent = '';
  submit.disabled = true;
  const r = await api('POST', '/api/v1/login', { name, password });
  // /me says whether this role may use the console (403 with the reason if not).
  const me = r.status === 200 ? await api('GET', '/api/v1/me') : r;
  submit.disabled = false;
  if (r.status === 401) errorEl.textContent = 'Identifiant ou mot de passe incorrect';
  else if (me.status !== 200) {
    errorEl.textContent = errorText(me);
    if (r.status === 200) await api('POST', '/api/v1/logout'); // do not leave it open
  } else if (!CONSOLE_ROLES.includes(me.body && me.body.role)) {
    errorEl.textContent = `Le rôle ${me.body && me.body.role} n\u2019a pas accès à la console`;
    await api('POST', '/api/v1/logout');
  } else startConsole(me.body);
}

function startConsole(user) {
  S.user = user;
  $('login').hidden = true;
  $('console').hidden = false;
  $('user-name').textContent = user.name || '';
  $('user-role').textContent = ROLE_LABELS[user.role] || user.role || '';
  showRecordingsButton(user);
  S.running = true;
  S.backoff = BACKOFF_MIN;
  connect();
  if (!S.city) loadCity();
  invalidate('alerts', 'wall', 'map');
}

function stopConsole() {
  S.running = false;
  closeRecordings();
  clearTimeout(S.reconnectTimer);
  if (S.ws) { const ws = S.ws; S.ws = null; ws.close(); }
  S.tiles.forEach((t) => t && destroyTile(t));
  S.tiles = new Array(S.grid * S.grid).fill(null);
  S.wallSession = null;
  for (const key of ['alerts', 'positions', 'tracks', 'selections', 'health']) S[key] = new Map();
  S.lastId = S.snapshotId = null;
  $('connection').hidden = true;
  $('recording-stopped').hidden = true;
  S.controls = new Map();
  renderControls();
  renderWall();
  renderAlerts();
  renderMap();
}

async function logout() {
  stopConsole();
  await api('POST', '/api/v1/logout');
  showLogin('');
}

// ---------- live updates over the WebSocket ----------

function connect() {
  if (!S.running) return;
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  let url = `${proto}//${location.host}/ui/ws`;
  if (S.lastId) url += `?after=${encodeURIComponent(S.lastId)}`;
  const ws = new WebSocket(url);
  let opened = false;
  S.ws = ws;
  ws.onopen = () => { opened = true; };
  ws.onmessage = (ev) => onMessage(ev.data);
  ws.onclose = () => {
    if (S.ws !== ws) return; // closed on purpose (logout)
    S.ws = null;
    if (!S.running) return;
    $('connection').hidden = false;
    // A refused handshake may mean the login session is over: ask before looping.
    if (!opened) checkLoggedIn();
    S.reconnectTimer = setTimeout(connect, S.backoff);
    S.backoff = Math.min(S.backoff * 2, BACKOFF_MAX);
  };
}

async function checkLoggedIn() {
  const r = await api('GET', '/api/v1/me');
  if (S.running && (r.status === 401 || r.status === 403)) {
    stopConsole();
    showLogin(r.status === 401 ? 'Session expirée : reconnectez-vous' : errorText(r));
  }
}

function onMessage(text) {
  let msg;
  try { msg = JSON.parse(text); } catch { return; }
  if (!msg || typeof msg !== 'object') return;
  try {
    if (msg.type === 'snapshot') applySnapshot(msg);
    else applyEvent(msg);
  } catch (err) {
    console.error('bodycam: message not applied', err, msg);
  }
}

function mapOf(obj) {
  return new Map(obj && typeof obj === 'object' ? Object.entries(obj) : []);
}

// The snapshot replaces the state; the wall keeps its tiles.
function applySnapshot(m) {
  S.backoff = BACKOFF_MIN;
  $('connection').hidden = true;
  S.alerts = new Map();
  for (const a of Array.isArray(m.alerts) ? m.alerts : []) {
    if (a && a.session_id) S.alerts.set(a.session_id, a);
  }
  S.positions = mapOf(m.positions);
  S.tracks = new Map();
  for (const [sid, pts] of mapOf(m.tracks)) {
    if (Array.isArray(pts)) S.tracks.set(sid, pts.filter(validPoint).slice(-TRACK_MAX));
  }
  S.selections = mapOf(m.selections);
  S.health = mapOf(m.cameras);
  S.lastId = S.snapshotId = m.last_id || null;
  onRecording(m.recording);
  S.controls = new Map();
  for (const c of Array.isArray(m.controls) ? m.controls : []) if (c && c.camera_id) S.controls.set(c.camera_id, c);
  renderControls();
  if (S.tiles.every((t) => !t)) {
    const open = [...S.alerts.values()]
      .filter((a) => a.state !== 'cloturee' && a.session_state === 'live')
      .sort((a, b) => timeValue(b.raised_at) - timeValue(a.raised_at));
    if (open.length) salvo(open[0].session_id);
  } else if (S.wallSession) {
    refreshWallCameras();
  }
  invalidate('alerts', 'wall', 'map');
}

function applyEvent(m) {
  // Events up to the snapshot's last id are already in it: replaying them could
  // briefly move an alert back, or salvo an alert that is long known.
  if (m.id && S.snapshotId && compareIds(m.id, S.snapshotId) <= 0) return;
  if (m.id) S.lastId = m.id;
  const d = m.data && typeof m.data === 'object' ? m.data : {};
  if (m.type === 'alert') onAlert(d, true);
  else if (m.type === 'position') onPosition(d);
  else if (m.type === 'selection') onSelection(d);
  else if (m.type === 'camera_health') onHealth(d);
  else if (m.type === 'recording') onRecording(d);
  else if (m.type === 'ptz_control') onControl(d);
  // ptz and unknown types: informative only
}

function onPosition(p) {
  if (!p || !p.session_id || !isNum(p.lat) || !isNum(p.lon)) return;
  // After a reconnect the snapshot already holds the newest fix and its track; the replayed
  // older fixes must neither move the marker back nor be drawn a second time.
  const known = S.positions.get(p.session_id);
  if (known && timeValue(known.time) >= timeValue(p.time)) return;
  S.positions.set(p.session_id, p);
  const track = S.tracks.get(p.session_id) || [];
  const last = track[track.length - 1];
  // Idempotent: the same position applied twice adds one point.
  if (!last || last[0] !== p.lat || last[1] !== p.lon) track.push([p.lat, p.lon]);
  if (track.length > TRACK_MAX) track.splice(0, track.length - TRACK_MAX);
  S.tracks.set(p.session_id, track);
  invalidate('map', 'alerts');
}

function onSelection(d) {
  if (!d || !d.session_id) return;
  S.selections.set(d.session_id, Array.isArray(d.cameras) ? d.cameras : []);
  if (d.session_id === S.wallSession) refreshWallCameras();
  invalidate('map', 'wall');
}

// Manual control of a PTZ camera: the national police's notice and the time it has left are
// shown to the CSU (a control without notice is the CSU's own, and stays off this list).
function onControl(d) {
  if (!d || !d.camera_id) return;
  if (d.taken) S.controls.set(d.camera_id, d); else S.controls.delete(d.camera_id);
  renderControls();
}

function renderControls() {
  const list = $('controls');
  const now = Date.now();
  const shown = [...S.controls.values()].filter((c) => c.notice && timeValue(c.until) > now);
  list.replaceChildren(...shown.map((c) => {
    const left = Math.max(0, Math.round((timeValue(c.until) - now) / 1000));
    const clock = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}`;
    const name = (S.cameras.get(c.camera_id) || {}).name || c.camera_id;
    return el('li', { 'data-testid': 'control', 'data-camera-id': c.camera_id },
      `Police nationale (${c.holder}) pilote ${name} : « ${c.notice} » — fin dans ${clock}`);
  }));
  list.hidden = shown.length === 0;
}

// Recording stopped (the gateway's disk under its free-space floor): every console says so.
function onRecording(d) {
  $('recording-stopped').hidden = !(d && d.state === 'stopped');
}

function onHealth(d) {
  if (!d || !d.camera_id) return;
  S.health.set(d.camera_id, d.state);
  invalidate('map', 'wall');
}

// ---------- start ----------

async function boot() {
  $('login-form').addEventListener('submit', onLoginSubmit);
  $('logout').addEventListener('click', logout);
  $('map-center').addEventListener('click', centerMap);
  document.querySelectorAll('[data-grid]').forEach((b) => b.addEventListener('click', () => setGrid(Number(b.dataset.grid))));
  document.querySelector('[data-grid="2"]').classList.add('active');
  document.addEventListener('pointerdown', unlockAudio);
  // Views are released when the page goes away (keepalive lets the DELETE finish).
  window.addEventListener('pagehide', () => S.tiles.forEach((t) => t && t.viewUrl && deleteView(t.viewUrl)));
  setupMapInput();
  setupRecordings();
  setInterval(renderControls, 1000); // the countdown
  renderWall();
  const me = await api('GET', '/api/v1/me');
  if (me.status === 200 && me.body && CONSOLE_ROLES.includes(me.body.role)) startConsole(me.body);
  else if (me.status === 200) {
    await api('POST', '/api/v1/logout');
    showLogin(`Le rôle ${me.body && me.body.role} n\u2019a pas accès à la console`);
  } else showLogin(me.status === 401 ? '' : errorText(me));
}

setRenderers({ alerts: renderAlerts, wall: updateTiles, map: renderMap });
boot();
