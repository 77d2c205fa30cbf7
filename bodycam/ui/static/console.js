// bodycam — the CSU operator console (alarms, video wall, map).
// Plain script, no framework: the contract with the gateway is docs/console.md.
// Every piece of data reaches the page through textContent or setAttribute, never innerHTML.
'use strict';

(() => {
  const STATE_LABELS = {
    nouvelle: 'Nouvelle', prise_en_compte: 'Prise en compte',
    renforts_envoyes: 'Renforts envoyés', cloturee: 'Clôturée',
  };
  const STATE_RANK = { nouvelle: 0, prise_en_compte: 1, renforts_envoyes: 2, cloturee: 3 };
  const SESSION_LABELS = { live: 'en direct', interrupted: 'liaison perdue', ended: 'terminée' };
  const REASON_LABELS = { sees: 'voit', can_aim: 'orientable', nearby: 'proche' };
  const ROLE_LABELS = {
    operator: 'opérateur', supervisor: 'superviseur', police_nationale: 'police nationale',
  };
  // The three actions on an alert, and the states each one may start from.
  const ACTIONS = [
    { op: 'ack', testid: 'btn-ack', label: 'Prendre en compte', from: ['nouvelle'] },
    { op: 'dispatch', testid: 'btn-dispatch', label: 'Renforts envoyés',
      from: ['nouvelle', 'prise_en_compte'] },
    { op: 'close', testid: 'btn-close', label: 'Clôturer',
      from: ['nouvelle', 'prise_en_compte', 'renforts_envoyes'] },
  ];
  const TRACK_MAX = 500;
  const BACKOFF_MIN = 500;
  const BACKOFF_MAX = 5000;
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const S = {
    user: null, running: false,
    alerts: new Map(), positions: new Map(), tracks: new Map(),
    selections: new Map(), health: new Map(),
    lastId: null, snapshotId: null,
    ws: null, backoff: BACKOFF_MIN, reconnectTimer: null,
    wallSession: null, grid: 2, tiles: [null, null, null, null],
    city: null, cameras: new Map(), view: null, full: null,
  };
  const $ = (id) => document.getElementById(id);

  // ---------- small helpers ----------

  function el(tag, attrs = {}, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svgEl(tag, attrs = {}) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  }

  // Times are ISO 8601 strings from the gateway; accept epoch numbers too.
  function fmtTime(value) {
    if (value === null || value === undefined || value === '') return '--:--:--';
    const ms = typeof value === 'number' ? (value < 1e12 ? value * 1000 : value) : Date.parse(value);
    if (!Number.isFinite(ms)) return '--:--:--';
    const d = new Date(ms);
    return [d.getHours(), d.getMinutes(), d.getSeconds()]
      .map((n) => String(n).padStart(2, '0')).join(':');
  }

  function timeValue(value) {
    const ms = typeof value === 'number' ? value : Date.parse(value);
    return Number.isFinite(ms) ? ms : 0;
  }

  // Event ids are "<milliseconds>-<sequence>"; NaN when either is not of that form.
  function compareIds(a, b) {
    const ma = /^(\d+)-(\d+)$/.exec(String(a));
    const mb = /^(\d+)-(\d+)$/.exec(String(b));
    if (!ma || !mb) return NaN;
    return (Number(ma[1]) - Number(mb[1])) || (Number(ma[2]) - Number(mb[2]));
  }

  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

  async function api(method, path, body) {
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
  const errorText = (r) => {
    const label = ERROR_LABELS[r.status] || `Erreur ${r.status}`;
    const detail = r.body && r.body.error;
    return detail ? `${label} (${detail})` : label;
  };
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
    else if (me.status !== 200) errorEl.textContent = errorText(me);
    else if (!CONSOLE_ROLES.includes(me.body && me.body.role)) {
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
    S.running = true;
    S.backoff = BACKOFF_MIN;
    connect();
    if (!S.city) loadCity();
    invalidate('alerts', 'wall', 'map');
  }

  function stopConsole() {
    S.running = false;
    clearTimeout(S.reconnectTimer);
    if (S.ws) { const ws = S.ws; S.ws = null; ws.close(); }
    S.tiles.forEach((t) => t && destroyTile(t));
    S.tiles = new Array(S.grid * S.grid).fill(null);
    S.wallSession = null;
    for (const key of ['alerts', 'positions', 'tracks', 'selections', 'health']) S[key] = new Map();
    S.lastId = S.snapshotId = null;
    $('connection').hidden = true;
    renderWall();
    renderAlerts();
    renderMap();
  }

  async function logout() {
    stopConsole();
    await api('POST', '/api/v1/logout');
    showLogin('');
  }

  const canAct = () => !!S.user && S.user.role !== 'police_nationale';

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

  const validPoint = (p) => Array.isArray(p) && isNum(p[0]) && isNum(p[1]);

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
    // ptz, ptz_control and unknown types: informative only
  }

  function onAlert(a, live) {
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

  function onPosition(p) {
    if (!p || !p.session_id || !isNum(p.lat) || !isNum(p.lon)) return;
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

  function onHealth(d) {
    if (!d || !d.camera_id) return;
    S.health.set(d.camera_id, d.state);
    invalidate('map', 'wall');
  }

  // Batch DOM work: many events in a row give one render.
  const dirty = new Set();
  let renderPending = false;
  function invalidate(...parts) {
    parts.forEach((p) => dirty.add(p));
    if (renderPending) return;
    renderPending = true;
    // requestAnimationFrame does not run in a hidden tab; a timer does.
    if (document.hidden) setTimeout(flush, 100); else requestAnimationFrame(flush);
  }

  function flush() {
    renderPending = false;
    const parts = new Set(dirty);
    dirty.clear();
    const renderers = { alerts: renderAlerts, wall: updateTiles, map: renderMap };
    for (const p of parts) {
      try { renderers[p](); } catch (err) { console.error('bodycam: render', p, err); }
    }
  }

  // ---------- alarms ----------

  const alertEls = new Map(); // session id → { li, refs }

  function selectionOf(sid) {
    const list = S.selections.get(sid);
    return Array.isArray(list) ? list.filter((c) => c && c.camera_id) : [];
  }

  function compareAlerts(a, b) {
    const closed = (a.state === 'cloturee') - (b.state === 'cloturee');
    return closed || timeValue(b.raised_at) - timeValue(a.raised_at)
      || String(a.session_id).localeCompare(String(b.session_id));
  }

  function renderAlerts() {
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
  function unlockAudio() {
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

  // ---------- video wall ----------

  const tileKey = (t) => `${t.kind}:${t.key}`;

  function renderWall() {
    const wall = $('wall');
    wall.className = `wall grid-${S.grid}`;
    // Moving the same elements keeps videos playing and images streaming.
    wall.replaceChildren(...S.tiles.map((t) => t ? t.el : el('div', { class: 'tile empty' }, 'Libre')));
  }

  function makeTile(kind, key) {
    const t = { kind, key, pinned: false, closed: false, error: '', pc: null, viewUrl: null };
    t.el = el('div', { class: `tile tile-${kind}`, 'data-testid': 'tile' });
    t.status = el('div', { class: 'tile-status', 'data-testid': 'tile-status', hidden: '' });
    t.caption = el('span', { class: 'caption', 'data-testid': 'tile-caption' });
    t.pin = el('button', { type: 'button', class: 'pin', 'data-testid': 'btn-pin' }, '📌 Épingler');
    t.pin.addEventListener('click', () => togglePin(t));
    const bar = el('div', { class: 'tile-bar' });
    bar.append(t.caption, t.pin);
    if (kind === 'bodycam') makeVideo(t); else t.el.append(makeImage(t));
    t.el.append(t.status, bar);
    updateTile(t);
    return t;
  }

  function togglePin(t) {
    t.pinned = !t.pinned;
    t.pin.textContent = t.pinned ? 'Désépingler' : '📌 Épingler';
    t.el.classList.toggle('pinned', t.pinned);
  }

  function destroyTile(t) {
    t.closed = true;
    clearTimeout(t.retryTimer);
    if (t.kind === 'bodycam') {
      teardownPeer(t);
      t.video.srcObject = null;
    } else {
      t.img.src = '';
    }
    t.el.remove();
  }

  // The first unpinned tile gets the body camera, the next ones the selection, best first.
  // Tiles that already show what is wanted are moved rather than restarted.
  function salvo(sid) {
    S.wallSession = sid;
    const used = new Set(S.tiles.filter((t) => t && t.pinned).map(tileKey));
    const slots = [];
    const pool = new Map();
    S.tiles.forEach((t, i) => {
      if (t && t.pinned) return;
      slots.push(i);
      if (t) pool.set(tileKey(t), t);
      S.tiles[i] = null;
    });
    const wanted = [['bodycam', sid], ...selectionOf(sid).map((c) => ['camera', c.camera_id])];
    for (const [kind, key] of wanted) {
      if (!slots.length) break;
      if (used.has(`${kind}:${key}`)) continue;
      used.add(`${kind}:${key}`);
      let t = pool.get(`${kind}:${key}`);
      if (t) pool.delete(`${kind}:${key}`); else t = makeTile(kind, key);
      // Clicking the alert again is also how the operator retries a failed stream.
      if (kind === 'bodycam' && !t.pc && !t.ended && t.error && sessionState(key) === 'live') {
        clearTimeout(t.retryTimer);
        t.retried = false;
        startWhep(t);
      }
      S.tiles[slots.shift()] = t;
    }
    pool.forEach(destroyTile);
    renderWall();
    invalidate('alerts', 'wall', 'map');
  }

  // A new selection for the wall's session: keep the camera tiles still selected, put the
  // new cameras in the free unpinned slots (empty, or whose camera left), clear leftovers.
  function refreshWallCameras() {
    const wanted = [...new Set(selectionOf(S.wallSession).map((c) => c.camera_id))];
    const keep = new Set(wanted);
    const shown = new Set();
    const free = [];
    S.tiles.forEach((t, i) => {
      if (!t) { free.push(i); return; }
      if (t.kind !== 'camera') return;
      if (t.pinned) { shown.add(t.key); return; }
      if (keep.has(t.key) && !shown.has(t.key)) shown.add(t.key); else free.push(i);
    });
    for (const id of wanted) {
      if (shown.has(id)) continue;
      if (!free.length) break;
      const i = free.shift();
      if (S.tiles[i]) destroyTile(S.tiles[i]);
      S.tiles[i] = makeTile('camera', id);
      shown.add(id);
    }
    for (const i of free) {
      if (S.tiles[i]) { destroyTile(S.tiles[i]); S.tiles[i] = null; }
    }
    renderWall();
  }

  // Another grid size keeps tiles by position; a pinned tile that no longer fits takes
  // an empty slot, or the last unpinned one.
  function setGrid(n) {
    const size = n * n;
    const next = new Array(size).fill(null);
    const dropped = [];
    S.tiles.forEach((t, i) => { if (t) (i < size ? (next[i] = t) : dropped.push(t)); });
    for (const t of dropped) {
      let j = t.pinned ? next.indexOf(null) : -1;
      if (t.pinned && j < 0) j = next.findLastIndex((x) => x && !x.pinned);
      if (j < 0) { destroyTile(t); continue; }
      if (next[j]) destroyTile(next[j]);
      next[j] = t;
    }
    S.grid = n;
    S.tiles = next;
    document.querySelectorAll('[data-grid]').forEach((b) => b.classList.toggle('active', b.dataset.grid === String(n)));
    if (S.wallSession) refreshWallCameras(); else renderWall();
    invalidate('wall');
  }

  // Body camera tile: WHEP, receive only.
  function makeVideo(t) {
    t.video = el('video', { 'data-testid': 'tile-bodycam', 'data-session-id': t.key, playsinline: '', autoplay: '' });
    t.unmute = el('button', { type: 'button', class: 'unmute', 'data-testid': 'btn-unmute', hidden: '' }, '🔇 Activer le son');
    t.unmute.addEventListener('click', () => {
      t.video.muted = false;
      t.video.play().then(() => { t.unmute.hidden = true; }).catch(() => { t.video.muted = true; });
    });
    t.el.append(t.video, t.unmute);
    if (sessionState(t.key) !== 'ended') startWhep(t);
  }

  const sessionState = (sid) => (S.alerts.get(sid) || {}).session_state;

  function iceGatheringDone(pc, timeoutMs) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') { clearTimeout(timer); resolve(); }
      });
    });
  }

  async function startWhep(t) {
    t.error = '';
    let pc = null;
    try {
      pc = new RTCPeerConnection({ iceServers: [] });
      t.pc = pc;
      pc.addTransceiver('video', { direction: 'recvonly' });
      pc.addTransceiver('audio', { direction: 'recvonly' });
      const stream = new MediaStream();
      pc.ontrack = (ev) => {
        stream.addTrack(ev.track);
        // A fresh MediaStream object makes the element take the new track.
        t.video.srcObject = new MediaStream(stream.getTracks());
        playWithSound(t);
      };
      pc.onconnectionstatechange = () => {
        if (t.pc === pc && pc.connectionState === 'failed') whepFailed(t, 'Liaison vidéo perdue');
      };
      await pc.setLocalDescription(await pc.createOffer());
      await iceGatheringDone(pc, 2000);
      if (t.pc !== pc) return;
      // fetch follows a 307 to the node holding the session; response.url is where it landed.
      const resp = await fetch(`/whep/${encodeURIComponent(t.key)}`, {
        method: 'POST', credentials: 'same-origin',
        headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp,
      });
      const location = resp.headers.get('Location');
      const viewUrl = location ? new URL(location, resp.url).href : null;
      if (t.pc !== pc) { if (viewUrl) deleteView(viewUrl); return; } // tile gone meanwhile
      t.viewUrl = viewUrl;
      if (resp.status !== 201) throw new Error(`Flux indisponible (${resp.status})`);
      await pc.setRemoteDescription({ type: 'answer', sdp: await resp.text() });
    } catch (err) {
      if (t.pc === pc || !pc) whepFailed(t, err && err.message && err.message.startsWith('Flux') ? err.message : 'Flux indisponible');
    }
    updateTile(t);
  }

  // One retry, 2 s later, while the session is live; after that the tile says why.
  function whepFailed(t, message) {
    teardownPeer(t);
    if (t.closed || t.ended) return;
    if (!t.retried && sessionState(t.key) === 'live') {
      t.retried = true;
      t.error = 'Reconnexion du flux…';
      t.retryTimer = setTimeout(() => {
        if (t.closed || t.ended) return;
        if (sessionState(t.key) === 'live') startWhep(t);
        else { t.error = message; updateTile(t); }
      }, 2000);
    } else {
      t.error = message;
    }
    updateTile(t);
  }

  function teardownPeer(t) {
    if (t.pc) {
      const pc = t.pc;
      t.pc = null;
      pc.ontrack = pc.onconnectionstatechange = null;
      pc.close();
    }
    if (t.viewUrl) { deleteView(t.viewUrl); t.viewUrl = null; }
  }

  function deleteView(url) {
    fetch(url, { method: 'DELETE', credentials: 'same-origin', keepalive: true }).catch(() => {});
  }

  function endStream(t) {
    if (t.ended) return;
    t.ended = true;
    clearTimeout(t.retryTimer);
    teardownPeer(t);
  }

  // Try with sound; autoplay rules may refuse it until the operator clicks.
  function playWithSound(t) {
    const v = t.video;
    v.muted = false;
    v.play().then(() => { t.unmute.hidden = true; }).catch((err) => {
      if (err && err.name === 'AbortError') return; // a newer srcObject took over
      v.muted = true;
      t.unmute.hidden = false;
      v.play().catch(() => {});
    });
  }

  // Fixed camera tile: the gateway relays the camera's MJPEG. After an error, a fresh <img>
  // is made 10 s later: reusing the element would mix the old request's events with the new.
  function makeImage(t) {
    const img = el('img', { 'data-testid': 'tile-camera', 'data-camera-id': t.key, alt: '' });
    img.addEventListener('load', () => {
      if (t.img === img && t.error) { t.error = ''; updateTile(t); }
    });
    img.addEventListener('error', () => {
      if (t.closed || t.img !== img) return;
      t.error = 'Image indisponible';
      updateTile(t);
      clearTimeout(t.retryTimer);
      t.retryTimer = setTimeout(() => {
        if (t.closed || t.img !== img) return;
        img.replaceWith(makeImage(t)); // makeImage clears the old one's src
      }, 10000);
    });
    img.src = `/ui/cameras/${encodeURIComponent(t.key)}/mjpeg`;
    if (t.img) t.img.src = '';
    t.img = img;
    return img;
  }

  function updateTiles() {
    S.tiles.forEach((t) => t && updateTile(t));
  }

  function updateTile(t) {
    let caption;
    let status = t.error;
    if (t.kind === 'bodycam') {
      const a = S.alerts.get(t.key) || {};
      const who = a.officer || a.device_id || t.key;
      caption = `${who}${a.device_id && a.officer ? ` · ${a.device_id}` : ''} — ${SESSION_LABELS[a.session_state] || 'session inconnue'}`;
      if (a.session_state === 'ended') { status = 'Flux terminé'; endStream(t); }
      else if (a.session_state === 'interrupted' && !status) status = 'Liaison perdue';
    } else {
      const choice = findChoice(t.key);
      const cam = S.cameras.get(t.key) || {};
      const parts = [(choice && choice.name) || cam.name || t.key];
      if (choice && REASON_LABELS[choice.reason]) parts.push(REASON_LABELS[choice.reason]);
      if (choice && isNum(choice.distance_m)) parts.push(`${Math.round(choice.distance_m)} m`);
      caption = parts.join(' · ');
      const health = S.health.get(t.key);
      if (health && health !== 'up' && !status) status = 'Caméra hors service';
    }
    t.caption.textContent = caption;
    t.caption.title = caption;
    t.status.textContent = status || '';
    t.status.hidden = !status;
    t.el.classList.toggle('ended', status === 'Flux terminé');
  }

  // The camera's entry in the wall session's selection (reason, distance), if any.
  function findChoice(cameraId) {
    return selectionOf(S.wallSession).find((c) => c.camera_id === cameraId)
      || [...S.selections.values()].flat().find((c) => c && c.camera_id === cameraId);
  }

  // ---------- map ----------

  let project = () => [0, 0];

  async function loadCity() {
    let city;
    try {
      const resp = await fetch('/ui/city.json', { credentials: 'same-origin' });
      if (!resp.ok) throw new Error(String(resp.status));
      city = await resp.json();
      if (!city || typeof city !== 'object') throw new Error('not a city');
    } catch {
      $('map-error').hidden = false;
      $('map').classList.add('failed');
      if (S.running) setTimeout(() => { if (S.running && !S.city) loadCity(); }, 10000);
      return;
    }
    S.city = city;
    $('map-error').hidden = true;
    $('map').classList.remove('failed');
    try {
      setupProjection(city);
      drawCity(city);
      fitView();
    } catch (err) {
      console.error('bodycam: city not drawn', err);
    }
    invalidate('map', 'wall');
  }

  const features = (fc) => (fc && Array.isArray(fc.features) ? fc.features : []).filter((f) => f && f.geometry);

  // Equirectangular projection in metres around the centre of the bounds.
  function setupProjection(city) {
    const b = Array.isArray(city.bounds) ? city.bounds : [];
    let [south, west] = Array.isArray(b[0]) ? b[0] : [];
    let [north, east] = Array.isArray(b[1]) ? b[1] : [];
    if (![south, west, north, east].every(isNum)) {
      const pts = features(city.cameras).map((f) => f.geometry.coordinates).filter(validPoint);
      const lons = pts.map((p) => p[0]);
      const lats = pts.map((p) => p[1]);
      [south, west, north, east] = [Math.min(...lats), Math.min(...lons), Math.max(...lats), Math.max(...lons)];
      if (!pts.length) [south, west, north, east] = [0, 0, 0.01, 0.01];
    }
    const lat0 = (south + north) / 2;
    const lon0 = (west + east) / 2;
    const kx = Math.cos((lat0 * Math.PI) / 180) * 111320;
    project = (lon, lat) => [(lon - lon0) * kx, -(lat - lat0) * 110540];
    const [x0, y0] = project(west, north);
    const [x1, y1] = project(east, south);
    const margin = 0.03 * Math.max(x1 - x0, y1 - y0);
    S.full = { x: x0 - margin, y: y0 - margin, w: x1 - x0 + 2 * margin, h: y1 - y0 + 2 * margin };
  }

  function lineD(coords, close) {
    const pts = (Array.isArray(coords) ? coords : []).filter(validPoint);
    if (!pts.length) return '';
    return pts.map((c, i) => {
      const [x, y] = project(c[0], c[1]);
      return `${i ? 'L' : 'M'}${x.toFixed(1)} ${y.toFixed(1)}`;
    }).join('') + (close ? 'Z' : '');
  }

  function geometryD(g) {
    const c = g && g.coordinates;
    if (!Array.isArray(c)) return '';
    switch (g.type) {
      case 'LineString': return lineD(c, false);
      case 'MultiLineString': return c.map((l) => lineD(l, false)).join('');
      case 'Polygon': return c.map((r) => lineD(r, true)).join('');
      case 'MultiPolygon': return c.flat(1).map((r) => lineD(r, true)).join('');
      default: return '';
    }
  }

  function withTitle(node, text) {
    if (text) { const title = svgEl('title'); title.textContent = text; node.append(title); }
    return node;
  }

  function drawCity(city) {
    const buildings = features(city.buildings).map((f) => withTitle(
      svgEl('path', { class: 'building', d: geometryD(f.geometry) }), f.properties && f.properties.name));
    $('layer-buildings').replaceChildren(...buildings);
    const streets = features(city.streets).map((f) => {
      const area = /Polygon/.test(f.geometry.type);
      return withTitle(svgEl('path', { class: area ? 'square' : 'street', d: geometryD(f.geometry) }),
        f.properties && f.properties.name);
    });
    $('layer-streets').replaceChildren(...streets);
    S.cameras = new Map();
    const cams = [];
    for (const f of features(city.cameras)) {
      const p = f.properties || {};
      if (!p.id || !validPoint(f.geometry.coordinates)) continue;
      S.cameras.set(p.id, p);
      const g = svgEl('g', { class: 'camera', 'data-camera-id': p.id });
      if (Array.isArray(p.sector)) g.append(svgEl('path', { class: 'sector', d: lineD(p.sector, true) }));
      const [x, y] = project(...f.geometry.coordinates);
      g.append(svgEl('circle', { class: 'cam-dot', cx: x.toFixed(1), cy: y.toFixed(1) }));
      cams.push(withTitle(g, p.name || p.id));
    }
    $('layer-cameras').replaceChildren(...cams);
  }

  // Only the cameras' classes and the officers change: the city layers are drawn once.
  function renderMap() {
    const selected = new Set(selectionOf(S.wallSession).map((c) => c.camera_id));
    for (const g of $('layer-cameras').children) {
      const id = g.getAttribute('data-camera-id');
      const health = S.health.get(id);
      g.classList.toggle('selected', selected.has(id));
      g.classList.toggle('down', health !== undefined && health !== 'up');
    }
    renderOfficers();
  }

  const officerEls = new Map(); // session id → { marker, label, line }

  function renderOfficers() {
    const shown = new Set();
    for (const [sid, p] of S.positions) {
      const a = S.alerts.get(sid);
      if (!p || !isNum(p.lat) || !isNum(p.lon) || (a && a.session_state === 'ended')) continue;
      shown.add(sid);
      let e = officerEls.get(sid);
      if (!e) e = createOfficerEl(sid);
      const [x, y] = project(p.lon, p.lat);
      e.marker.setAttribute('cx', x.toFixed(1));
      e.marker.setAttribute('cy', y.toFixed(1));
      e.label.setAttribute('x', x.toFixed(1));
      e.label.setAttribute('y', y.toFixed(1));
      const name = (a && a.officer) || p.device_id || (a && a.device_id) || sid;
      e.label.textContent = name;
      e.title.textContent = name;
      const track = (S.tracks.get(sid) || []).filter(validPoint);
      e.line.setAttribute('points', track.map(([lat, lon]) => project(lon, lat).map((v) => v.toFixed(1)).join(',')).join(' '));
      const cls = `${a && a.session_state === 'interrupted' ? ' interrupted' : ''}${sid === S.wallSession ? ' wall' : ''}`;
      e.marker.setAttribute('class', `officer${cls}`);
      e.label.setAttribute('class', `officer-label${cls}`);
      e.line.setAttribute('class', `track${cls}`);
    }
    for (const [sid, e] of officerEls) {
      if (shown.has(sid)) continue;
      e.marker.remove(); e.label.remove(); e.line.remove();
      officerEls.delete(sid);
    }
  }

  function createOfficerEl(sid) {
    const e = {
      marker: svgEl('circle', { 'data-testid': 'map-officer', 'data-session-id': sid }),
      label: svgEl('text', { 'data-session-id': sid }),
      line: svgEl('polyline', { 'data-session-id': sid, 'data-testid': 'map-track' }),
      title: svgEl('title'),
    };
    e.marker.append(e.title);
    e.marker.addEventListener('click', () => { if (S.alerts.has(sid)) salvo(sid); });
    $('layer-tracks').append(e.line);
    $('layer-officers').append(e.marker, e.label);
    officerEls.set(sid, e);
    return e;
  }

  // The whole city, widened to the element's shape if needed.
  function fitView() {
    if (!S.full) return;
    const r = $('map').getBoundingClientRect();
    const f = S.full;
    const w = r.width && r.height ? Math.max(f.w, f.h * (r.width / r.height)) : f.w;
    S.view = { x: f.x + (f.w - w) / 2, y: f.y, w, h: f.h };
    applyView();
  }

  // Dots and labels keep their size on screen: CSS scales them by metres per pixel.
  // The view takes the element's shape (same centre), so that zoom and pan are exact.
  function applyView() {
    const svg = $('map');
    const v = S.view;
    if (!v) return;
    const r = svg.getBoundingClientRect();
    if (r.width > 0 && r.height > 0) {
      const h = v.w * (r.height / r.width);
      v.y += (v.h - h) / 2;
      v.h = h;
    }
    svg.setAttribute('viewBox', `${v.x} ${v.y} ${v.w} ${v.h}`);
    svg.style.setProperty('--mpp', String(r.width ? v.w / r.width : 1));
  }

  function clientToSvg(svg, clientX, clientY) {
    const ctm = svg.getScreenCTM();
    if (!ctm) return null;
    return new DOMPoint(clientX, clientY).matrixTransform(ctm.inverse());
  }

  function onWheel(ev) {
    if (!S.view) return;
    ev.preventDefault();
    const svg = $('map');
    const p = clientToSvg(svg, ev.clientX, ev.clientY);
    if (!p) return;
    const v = S.view;
    // Zoom around the pointer: the point under it stays under it.
    const minW = 40;
    const maxW = S.full.w * 2;
    const w = Math.min(maxW, Math.max(minW, v.w * Math.exp(ev.deltaY * 0.0015)));
    const f = w / v.w;
    S.view = { x: p.x - (p.x - v.x) * f, y: p.y - (p.y - v.y) * f, w: v.w * f, h: v.h * f };
    applyView();
  }

  function setupMapInput() {
    const svg = $('map');
    svg.addEventListener('wheel', onWheel, { passive: false });
    let drag = null;
    svg.addEventListener('pointerdown', (ev) => {
      if (ev.button !== 0 || !S.view) return;
      drag = { id: ev.pointerId, x: ev.clientX, y: ev.clientY, view: { ...S.view }, moved: false };
    });
    svg.addEventListener('pointermove', (ev) => {
      if (!drag || ev.pointerId !== drag.id) return;
      const dx = ev.clientX - drag.x;
      const dy = ev.clientY - drag.y;
      // Capture only once it is a drag, so that a click on an officer still lands on it.
      if (!drag.moved && Math.hypot(dx, dy) < 4) return;
      if (!drag.moved) { drag.moved = true; svg.setPointerCapture(ev.pointerId); svg.classList.add('dragging'); }
      const ctm = svg.getScreenCTM();
      const scale = ctm ? ctm.a : 1; // pixels per metre
      S.view = { ...drag.view, x: drag.view.x - dx / scale, y: drag.view.y - dy / scale };
      applyView();
    });
    const end = () => { drag = null; svg.classList.remove('dragging'); };
    svg.addEventListener('pointerup', end);
    svg.addEventListener('pointercancel', end);
    new ResizeObserver(() => applyView()).observe(svg);
  }

  // Centre on the wall's officer (at street scale); without one, show the whole city.
  function centerMap() {
    const p = S.positions.get(S.wallSession);
    if (!S.view || !p || !isNum(p.lat) || !isNum(p.lon)) { fitView(); return; }
    const [x, y] = project(p.lon, p.lat);
    const w = Math.min(S.view.w, 400);
    const h = w * (S.view.h / S.view.w);
    S.view = { x: x - w / 2, y: y - h / 2, w, h };
    applyView();
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
    renderWall();
    const me = await api('GET', '/api/v1/me');
    if (me.status === 200 && me.body && CONSOLE_ROLES.includes(me.body.role)) startConsole(me.body);
    else showLogin(me.status === 401 || me.status === 200 ? '' : errorText(me));
  }

  boot();
})();
