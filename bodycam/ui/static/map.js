// The SVG map: projection, city layers, cameras, officers and their tracks, zoom, pan and recentre.

import { $, svgEl, isNum, validPoint } from './util.js';
import { S, invalidate, selectionOf } from './state.js';
import { salvo } from './wall.js';

// ---------- map ----------

let project = () => [0, 0];

export async function loadCity() {
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
export function renderMap() {
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

export function setupMapInput() {
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
export function centerMap() {
  const p = S.positions.get(S.wallSession);
  if (!S.view || !p || !isNum(p.lat) || !isNum(p.lon)) { fitView(); return; }
  const [x, y] = project(p.lon, p.lat);
  const w = Math.min(S.view.w, 400);
  const h = w * (S.view.h / S.view.w);
  S.view = { x: x - w / 2, y: y - h / 2, w, h };
  applyView();
}
