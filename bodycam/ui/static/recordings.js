// Recordings: search, then view one in the page, with a stated reason, under a watermark.
// A viewing is not a copy (R241-12, R241-14): the gateway registers it with its time range
// and sends it as chunks of a few seconds that this player appends to a MediaSource
// (evidence/viewing.py); nothing here offers a download. docs/console.md has the contract.

import { $, el, api, errorText } from './util.js';

const RECORDING_ROLES = ['operator', 'supervisor'];
const AHEAD_SECONDS = 12; // fetch the next chunk when less than this is buffered ahead
const BEHIND_SECONDS = 60; // drop what was watched longer ago than this (memory)

let chosen = null; // the recording whose reason is being asked
let player = null;

const frDate = (iso) => (iso ? new Date(iso).toLocaleString('fr-FR') : '—');

// A datetime-local value is the operator's local time; the API wants ISO 8601 with a zone.
function isoOf(value) {
  if (!value) return undefined;
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? new Date(ms).toISOString() : undefined;
}

// The reverse, for prefilling the range with the session's own times (to the second).
function localOf(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function setupRecordings() {
  $('open-recordings').addEventListener('click', openRecordings);
  $('close-recordings').addEventListener('click', closeRecordings);
  $('recordings-search').addEventListener('submit', (ev) => { ev.preventDefault(); searchRecordings(); });
  $('viewing-form').addEventListener('submit', (ev) => { ev.preventDefault(); startViewing(); });
  $('viewing-cancel').addEventListener('click', () => { $('viewing-form').hidden = true; chosen = null; });
  $('player-close').addEventListener('click', stopPlayer);
  const video = $('player-video');
  video.addEventListener('contextmenu', (ev) => ev.preventDefault()); // no "save video as"
}

export function showRecordingsButton(user) {
  $('open-recordings').hidden = !RECORDING_ROLES.includes(user && user.role);
}

export function closeRecordings() {
  stopPlayer();
  $('viewing-form').hidden = true;
  $('recordings').hidden = true;
  chosen = null;
}

function openRecordings() {
  $('recordings').hidden = false;
  searchRecordings();
}

async function searchRecordings() {
  const form = $('recordings-search');
  const query = new URLSearchParams();
  for (const name of ['officer', 'device', 'place']) {
    const value = form.elements[name].value.trim();
    if (value) query.set(name, value);
  }
  for (const name of ['from', 'to']) {
    const value = isoOf(form.elements[name].value);
    if (value) query.set(name, value);
  }
  const r = await api('GET', `/api/v1/recordings?${query}`);
  const rows = $('recordings-rows');
  rows.replaceChildren();
  $('recordings-error').textContent = r.status === 200 ? '' : errorText(r);
  if (r.status !== 200 || !Array.isArray(r.body)) return;
  if (!r.body.length) {
    const tr = el('tr');
    tr.append(el('td', { colspan: '6', class: 'muted' }, 'Aucun enregistrement'));
    rows.append(tr);
  }
  for (const rec of r.body) rows.append(recordingRow(rec));
}

function recordingRow(rec) {
  const tr = el('tr', { 'data-testid': 'recording', 'data-session-id': rec.session_id });
  const kept = rec.destroyed_at ? `détruit le ${frDate(rec.destroyed_at)}`
    : rec.held ? 'sous scellé judiciaire'
      : rec.expires_at ? `jusqu’au ${frDate(rec.expires_at)}` : 'en cours';
  for (const text of [rec.officer || '—', rec.device_id, frDate(rec.started_at), frDate(rec.ended_at), kept]) {
    tr.append(el('td', {}, text));
  }
  const td = el('td');
  if (!rec.destroyed_at && rec.segments > 0) {
    const b = el('button', { type: 'button', 'data-testid': 'btn-view' }, 'Consulter…');
    b.addEventListener('click', () => askReason(rec));
    td.append(b);
  }
  tr.append(td);
  return tr;
}

function askReason(rec) {
  chosen = rec;
  const form = $('viewing-form');
  form.hidden = false;
  $('viewing-what').textContent = `${rec.officer || rec.device_id} — ${frDate(rec.started_at)}`;
  form.elements.reason.value = '';
  form.elements.from.value = localOf(rec.started_at);
  form.elements.to.value = localOf(rec.ended_at);
  form.elements.reason.focus();
}

async function startViewing() {
  if (!chosen) return;
  const form = $('viewing-form');
  const body = { reason: form.elements.reason.value.trim() };
  const since = isoOf(form.elements.from.value);
  const until = isoOf(form.elements.to.value);
  // the form's seconds are whole: leave the ends open when they are the session's own
  if (since && form.elements.from.value !== localOf(chosen.started_at)) body.from = since;
  if (until && form.elements.to.value !== localOf(chosen.ended_at)) body.to = until;
  const r = await api('POST', `/api/v1/recordings/${encodeURIComponent(chosen.session_id)}/viewings`, body);
  if (r.status !== 201 || !r.body) { $('recordings-error').textContent = errorText(r); return; }
  $('recordings-error').textContent = '';
  form.hidden = true;
  stopPlayer();
  player = new Player(r.body, $('player-video'));
  $('player').hidden = false;
  $('player-info').textContent =
    `Consultation ${r.body.viewing}, inscrite au registre : ${frDate(r.body.from)} → ${frDate(r.body.to)}`;
  player.start();
}

function stopPlayer() {
  if (player) player.stop();
  player = null;
  $('player').hidden = true;
}

// The watermark: who watches, and when, over the picture (what a screen shows, a photo keeps).
function markText(grant) {
  return `${grant.viewer} · ${new Date().toLocaleString('fr-FR')} · consultation ${grant.viewing}`;
}

class Player {
  constructor(grant, video) {
    this.grant = grant;
    this.video = video;
    this.chunks = Array.isArray(grant.chunks) ? grant.chunks : [];
    this.next = 0; // the chunk to fetch next
    this.busy = false;
    this.type = grant.type;
    this.controller = new AbortController();
    this.listeners = [
      ['timeupdate', () => this.fill()],
      ['seeking', () => this.seek()],
    ];
  }

  start() {
    this.source = new MediaSource();
    this.url = URL.createObjectURL(this.source);
    this.video.src = this.url;
    this.source.addEventListener('sourceopen', () => {
      this.buffer = this.source.addSourceBuffer(this.type);
      this.source.duration = this.grant.duration;
      this.fill();
    }, { once: true });
    for (const [name, fn] of this.listeners) this.video.addEventListener(name, fn);
    this.markTimer = setInterval(() => this.mark(), 1000);
    this.mark();
    this.video.play().catch(() => { /* the operator presses play */ });
  }

  stop() {
    this.controller.abort();
    clearInterval(this.markTimer);
    for (const [name, fn] of this.listeners) this.video.removeEventListener(name, fn);
    this.video.removeAttribute('src');
    this.video.load();
    if (this.url) URL.revokeObjectURL(this.url);
  }

  mark() {
    const text = markText(this.grant);
    document.querySelectorAll('[data-testid="watermark"] span').forEach((s) => { s.textContent = text; });
  }

  bufferedAhead() {
    const t = this.video.currentTime;
    const b = this.buffer && this.buffer.buffered;
    for (let i = 0; b && i < b.length; i++) if (b.start(i) <= t + 0.1 && t < b.end(i)) return b.end(i) - t;
    return 0;
  }

  chunkAt(t) {
    let found = 0;
    this.chunks.forEach((c, i) => { if (c.start <= t + 0.05) found = i; });
    return found;
  }

  seek() {
    if (this.bufferedAhead() > 0) return;
    this.next = this.chunkAt(this.video.currentTime);
    this.fill();
  }

  async fill() {
    if (this.busy || !this.buffer || this.next >= this.chunks.length) return;
    if (this.bufferedAhead() > AHEAD_SECONDS) return;
    this.busy = true;
    const chunk = this.chunks[this.next];
    try {
      const resp = await fetch(chunk.url, { credentials: 'same-origin', signal: this.controller.signal });
      if (!resp.ok) {
        let detail = null;
        try { detail = await resp.json(); } catch { /* not JSON */ }
        $('recordings-error').textContent = errorText({ status: resp.status, body: detail });
        return;
      }
      const type = resp.headers.get('X-Bodycam-Type') || this.type;
      const data = await resp.arrayBuffer();
      await this.trim();
      if (type !== this.type && this.buffer.changeType) { this.buffer.changeType(type); this.type = type; }
      this.buffer.timestampOffset = chunk.start;
      await this.append(data);
      this.next += 1;
    } catch (err) {
      if (err.name !== 'AbortError') console.error('bodycam: recording chunk', err);
      return;
    } finally {
      this.busy = false;
    }
    this.fill();
  }

  append(data) {
    return new Promise((resolve, reject) => {
      this.buffer.addEventListener('updateend', resolve, { once: true });
      this.buffer.addEventListener('error', reject, { once: true });
      this.buffer.appendBuffer(data);
    });
  }

  // What was watched a while ago leaves the buffer: a long viewing keeps a few chunks only.
  trim() {
    const behind = this.video.currentTime - BEHIND_SECONDS;
    const b = this.buffer.buffered;
    if (behind <= 0 || !b.length || b.start(0) >= behind) return Promise.resolve();
    return new Promise((resolve) => {
      this.buffer.addEventListener('updateend', resolve, { once: true });
      this.buffer.remove(0, behind);
    });
  }
}
