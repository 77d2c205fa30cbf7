// The video wall: grid, tiles, salvo, following the selection, pinning, WHEP body cameras, MJPEG cameras.

import { $, el, isNum } from './util.js';
import { S, SESSION_LABELS, invalidate, selectionOf, sessionState } from './state.js';

const REASON_LABELS = { sees: 'voit', can_aim: 'orientable', nearby: 'proche' };

// ---------- video wall ----------

const tileKey = (t) => `${t.kind}:${t.key}`;

export function renderWall() {
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

export function destroyTile(t) {
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
export function salvo(sid) {
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
export function refreshWallCameras() {
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
export function setGrid(n) {
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
      if (t.pc === pc && pc.connectionState === 'connected') t.retried = false; // retry again later
    };
    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringDone(pc, 2000);
    if (t.pc !== pc) return;
    // Any node answers: one that does not hold the session forwards the offer to the one
    // that does, and the media comes from there (the answer's candidates).
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

export function deleteView(url) {
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

export function updateTiles() {
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
