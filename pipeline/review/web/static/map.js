// 地图: the cameras and open cases of /api/map drawn as SVG, projected here, so the map needs no
// tile server and no internet. Without tiles the projection is equirectangular around the points'
// centre (at street scale a metre is a metre every way); with the tile server an operator set
// (data.tiles) it is Web Mercator at the zoom that fits, the tiles drawn underneath.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const EARTH_M = 6371008.8;  // mean radius
const TILE_PX = 256;
const MERCATOR_M_PER_PX = (2 * Math.PI * 6378137) / TILE_PX;  // metres per pixel at zoom 0, on the equator
const MAX_ZOOM = 19;
const MIN_SPAN_M = 150;  // the narrowest stretch shown: one camera alone is not drawn on an empty plain
const PAD_PX = 60;  // kept free around the points for the cases around a camera and its name
const RING_PX = 26;
const RING_MAX = 10;  // markers drawn around one camera; the rest are counted in a "+n" marker
const REFRESH_MS = 60000;
const RAD = Math.PI / 180;

function el(name, attrs, parent, text) {
  const node = document.createElementNS(SVG_NS, name);
  Object.entries(attrs || {}).forEach(([key, value]) => node.setAttribute(key, value));
  if (text !== undefined) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function titled(node, text) { el("title", {}, node, text); return node; }

function located(items) { return items.filter((item) => item.lat !== null && item.lon !== null); }

function bounds(points) {
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  return { minX: Math.min(...xs), maxX: Math.max(...xs), minY: Math.min(...ys), maxY: Math.max(...ys) };
}

// Equirectangular around the centre of the points; y grows southward on the screen.
function localView(points, width, height) {
  const b0 = bounds(points.map(([lat, lon]) => [lon, lat]));
  const lat0 = (b0.minY + b0.maxY) / 2, lon0 = (b0.minX + b0.maxX) / 2;
  const kx = EARTH_M * RAD * Math.cos(lat0 * RAD), ky = EARTH_M * RAD;
  const b = bounds(points.map(([lat, lon]) => [(lon - lon0) * kx, (lat - lat0) * ky]));
  const scale = Math.min((width - 2 * PAD_PX) / (b.maxX - b.minX), (height - 2 * PAD_PX) / (b.maxY - b.minY),
    Math.min(width, height) / MIN_SPAN_M);  // pixels per metre
  const cx = (b.minX + b.maxX) / 2, cy = (b.minY + b.maxY) / 2;
  return {
    kind: "local", metresPerPx: 1 / scale, tiles: [],
    project: (lat, lon) => [width / 2 + ((lon - lon0) * kx - cx) * scale,
      height / 2 - ((lat - lat0) * ky - cy) * scale],
  };
}

// Web Mercator (EPSG:3857) pixels at zoom z, as tile servers cut them.
function worldPx(lat, lon, z) {
  const size = TILE_PX * 2 ** z;
  const s = Math.min(Math.max(Math.sin(lat * RAD), -0.9999), 0.9999);
  return [((lon + 180) / 360) * size, (0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)) * size];
}

function tileView(points, width, height, template) {
  const lat0 = points.reduce((sum, p) => sum + p[0], 0) / points.length;
  let z = MAX_ZOOM, b;
  for (; z > 0; z -= 1) {
    b = bounds(points.map(([lat, lon]) => worldPx(lat, lon, z)));
    const metresPerPx = (MERCATOR_M_PER_PX * Math.cos(lat0 * RAD)) / 2 ** z;
    if (b.maxX - b.minX <= width - 2 * PAD_PX && b.maxY - b.minY <= height - 2 * PAD_PX
        && Math.min(width, height) * metresPerPx >= MIN_SPAN_M) break;
  }
  b = bounds(points.map(([lat, lon]) => worldPx(lat, lon, z)));
  const ox = (b.minX + b.maxX) / 2 - width / 2, oy = (b.minY + b.maxY) / 2 - height / 2;
  const count = 2 ** z, tiles = [];
  for (let ty = Math.floor(oy / TILE_PX); ty <= Math.floor((oy + height) / TILE_PX); ty += 1) {
    if (ty < 0 || ty >= count) continue;
    for (let tx = Math.floor(ox / TILE_PX); tx <= Math.floor((ox + width) / TILE_PX); tx += 1) {
      const x = ((tx % count) + count) % count;
      const url = template.replace("{z}", z).replace("{x}", x).replace("{y}", ty);
      tiles.push({ url, left: tx * TILE_PX - ox, top: ty * TILE_PX - oy });
    }
  }
  return {
    kind: "tiles", tiles, metresPerPx: (MERCATOR_M_PER_PX * Math.cos(lat0 * RAD)) / 2 ** z,
    project: (lat, lon) => { const [x, y] = worldPx(lat, lon, z); return [x - ox, y - oy]; },
  };
}

function niceMetres(metres) {
  const power = 10 ** Math.floor(Math.log10(metres));
  return [5, 2, 1].map((step) => step * power).find((length) => length <= metres) || power;
}

function metresLabel(metres) { return metres >= 1000 ? `${metres / 1000} 公里` : `${metres} 米`; }

function drawGrid(svg, view, width, height, step) {
  const grid = el("g", { class: "grid" }, svg), px = step / view.metresPerPx;
  for (let x = (width / 2) % px; x < width; x += px) el("line", { x1: x, y1: 0, x2: x, y2: height }, grid);
  for (let y = (height / 2) % px; y < height; y += px) el("line", { x1: 0, y1: y, x2: width, y2: y }, grid);
}

function drawScaleAndNorth(svg, view, width, height) {
  const metres = niceMetres(view.metresPerPx * width * 0.25), length = metres / view.metresPerPx;
  const bar = el("g", { class: "scale-bar", id: "scale-bar", transform: `translate(14 ${height - 16})` }, svg);
  el("rect", { x: -6, y: -26, width: length + 12, height: 32, rx: 4, class: "backing" }, bar);
  el("path", { d: `M0 -6 V0 H${length.toFixed(1)} V-6` }, bar);
  el("text", { x: length / 2, y: -10, "text-anchor": "middle" }, bar, metresLabel(metres));
  const north = el("g", { class: "north", id: "north-arrow", transform: `translate(${width - 26} 16)` }, svg);
  titled(north, "上方为正北");
  el("rect", { x: -16, y: -6, width: 32, height: 50, rx: 4, class: "backing" }, north);
  el("text", { x: 0, y: 9, "text-anchor": "middle" }, north, "北");
  el("path", { d: "M0 14 L8 38 L0 32 L-8 38 Z" }, north);
  return metres;
}

function caseTitle(item) {
  const flags = [item.overdue ? "超期" : "", item.recheck_failed ? "复核未通过" : ""].filter(Boolean);
  return [`${item.violation_label} · ${item.status_label}${flags.map((f) => ` · ${f}`).join("")}`, item.case_id,
    `确认于 ${item.confirmed_wall.slice(0, 16).replace("T", " ")}`, item.camera_name].join("\n");
}

function drawCaseMarker(layer, item, x, y) {
  const link = el("a", { href: item.url, class: "case-marker", "data-case-id": item.case_id }, layer);
  titled(link, caseTitle(item));
  el("circle", { cx: x, cy: y, r: 14, class: "hit" }, link);
  const kind = item.overdue ? "mk-overdue" : `mk-${item.violation}`;
  const extra = item.recheck_failed ? " recheck-failed" : "";
  if (item.overdue) {
    const d = `M${x} ${y - 10} L${x + 10} ${y} L${x} ${y + 10} L${x - 10} ${y} Z`;
    el("path", { d, class: `mk ${kind}${extra}` }, link);
    el("text", { x, y: y + 4, "text-anchor": "middle", class: "mk-text" }, link, "!");
  } else {
    el("rect", { x: x - 7, y: y - 7, width: 14, height: 14, rx: 3, class: `mk ${kind}${extra}` }, link);
  }
}

// A camera's open cases on a ring around it: overdue first, then the newest; more than fit make a "+n".
function drawCases(layer, lines, cases, anchor, cameraId) {
  const sorted = [...cases].sort((a, b) => (b.overdue - a.overdue) || b.confirmed_wall.localeCompare(a.confirmed_wall));
  const slots = Math.min(sorted.length, RING_MAX), shown = sorted.length > RING_MAX ? RING_MAX - 1 : sorted.length;
  const radius = RING_PX + (slots > 6 ? 8 : 0);
  const place = (i) => {
    const angle = slots === 1 ? -Math.PI / 4 : -Math.PI / 2 + (i * 2 * Math.PI) / slots;
    return [anchor[0] + radius * Math.cos(angle), anchor[1] + radius * Math.sin(angle)];
  };
  for (let i = 0; i < slots; i += 1) {
    const [x, y] = place(i);
    el("line", { x1: anchor[0], y1: anchor[1], x2: x, y2: y }, lines);
    if (i < shown) { drawCaseMarker(layer, sorted[i], x, y); continue; }
    const more = el("a", { href: `/?camera=${encodeURIComponent(cameraId)}&status=`, class: "case-more" }, layer);
    titled(more, `另有 ${sorted.length - shown} 件，点击查看此摄像头的案件列表`);
    el("circle", { cx: x, cy: y, r: 12 }, more);
    el("text", { x, y: y + 4, "text-anchor": "middle" }, more, `+${sorted.length - shown}`);
  }
  return radius + 14;
}

const overlaps = (a, b) => a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;

// A camera's name beside it: right, left, below or above, the first place on the map that covers no
// other camera, ring of cases or name already placed (``taken``, which it joins).
function placeLabel(text, [x, y], reach, width, height, taken) {
  const w = text.getComputedTextLength() || 12 * text.textContent.length, h = 16;
  const places = [
    { box: { x0: x + reach, y0: y - h / 2, x1: x + reach + w, y1: y + h / 2 }, at: [x + reach, y + 4],
      anchor: "start" },
    { box: { x0: x - reach - w, y0: y - h / 2, x1: x - reach, y1: y + h / 2 }, at: [x - reach, y + 4], anchor: "end" },
    { box: { x0: x - w / 2, y0: y + reach - 4, x1: x + w / 2, y1: y + reach + h - 4 }, at: [x, y + reach + 8],
      anchor: "middle" },
    { box: { x0: x - w / 2, y0: y - reach - h + 4, x1: x + w / 2, y1: y - reach + 4 }, at: [x, y - reach],
      anchor: "middle" },
  ];
  const inside = places.filter(({ box }) => box.x0 >= 2 && box.x1 <= width - 2 && box.y0 >= 2 && box.y1 <= height - 2);
  const chosen = inside.find(({ box }) => !taken.some((other) => overlaps(box, other))) || inside[0] || places[0];
  text.setAttribute("x", chosen.at[0]);
  text.setAttribute("y", chosen.at[1]);
  text.setAttribute("text-anchor", chosen.anchor);
  taken.push(chosen.box);
}

function drawCamera(layer, camera, [x, y], onPick) {
  const group = el("g", { class: `camera health-${camera.health}`, "data-camera-id": camera.camera_id,
    tabindex: 0, role: "button" }, layer);
  titled(group, [camera.name, `${camera.state_label} · 健康：${camera.health_label}`, camera.address || "",
    `待办案件 ${camera.open_cases} 件`].filter(Boolean).join("\n"));
  el("circle", { cx: x, cy: y, r: 11, class: "cam" }, group);
  el("circle", { cx: x, cy: y, r: 3.5, class: "lens" }, group);
  group.addEventListener("click", () => onPick(camera));
  group.addEventListener("keydown", (event) => { if (event.key === "Enter") onPick(camera); });
  const label = camera.open_cases ? `${camera.name} · ${camera.open_cases} 件` : camera.name;
  return el("text", { x, y, class: "label" }, group, label);
}

function draw(svg, data, width, height, onPick) {
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  el("rect", { x: 0, y: 0, width, height, class: "map-bg" }, svg);
  const cameras = located(data.cameras), cases = located(data.cases);
  const points = [...cameras, ...cases].map((item) => [item.lat, item.lon]);
  svg.dataset.cameras = cameras.length;
  svg.dataset.cases = cases.length;
  if (!points.length) {
    el("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" }, svg,
      "没有带坐标的摄像头或案件");
    return;
  }
  const view = data.tiles ? tileView(points, width, height, data.tiles.url_template) : localView(points, width, height);
  svg.dataset.view = view.kind;
  const tiles = el("g", { class: "tiles" }, svg);
  view.tiles.forEach((tile) => el("image", { href: tile.url, x: tile.left, y: tile.top, width: TILE_PX,
    height: TILE_PX }, tiles));
  const step = niceMetres(view.metresPerPx * width * 0.25);
  if (view.kind === "local") drawGrid(svg, view, width, height, step);
  const lines = el("g", { class: "leaders" }, svg);
  const cameraLayer = el("g", { class: "cameras" }, svg), caseLayer = el("g", { class: "cases" }, svg);
  const anchors = new Map(cameras.map((camera) => [camera.camera_id, view.project(camera.lat, camera.lon)]));
  const byCamera = new Map(), reach = new Map(), taken = [];
  cases.forEach((item) => byCamera.set(item.camera_id, [...(byCamera.get(item.camera_id) || []), item]));
  byCamera.forEach((group, cameraId) => {
    const anchor = anchors.get(cameraId) || view.project(group[0].lat, group[0].lon);
    reach.set(cameraId, drawCases(caseLayer, lines, group, anchor, cameraId));
    const r = reach.get(cameraId) - 4;
    taken.push({ x0: anchor[0] - r, y0: anchor[1] - r, x1: anchor[0] + r, y1: anchor[1] + r });
  });
  anchors.forEach(([x, y]) => taken.push({ x0: x - 12, y0: y - 12, x1: x + 12, y1: y + 12 }));
  cameras.forEach((camera) => {
    const anchor = anchors.get(camera.camera_id);
    const text = drawCamera(cameraLayer, camera, anchor, onPick);
    placeLabel(text, anchor, reach.get(camera.camera_id) || 16, width, height, taken);
  });
  svg.dataset.scaleMetres = drawScaleAndNorth(svg, view, width, height);
}

function showCamera(panel, camera, data) {
  const cases = data.cases.filter((item) => item.camera_id === camera.camera_id);
  panel.replaceChildren();
  const add = (tag, text, parent = panel) => { const node = document.createElement(tag); node.textContent = text;
    parent.appendChild(node); return node; };
  add("strong", camera.name);
  add("p", `${camera.state_label} · 健康：${camera.health_label}${camera.address ? ` · ${camera.address}` : ""}`);
  if (!data.cases_shown) return;
  if (!cases.length) { add("p", "此摄像头没有符合筛选条件的待办案件。"); return; }
  const list = add("ul", "");
  cases.forEach((item) => {
    const link = add("a", `${item.violation_label} · ${item.status_label}${item.overdue ? " · 超期" : ""}`,
      add("li", ""));
    link.href = item.url;
  });
}

// The table under the map, kept as current as the map.
function updateTable(data) {
  data.cameras.forEach((camera) => {
    const row = document.querySelector(`#map-cameras tr[data-camera-id="${CSS.escape(camera.camera_id)}"]`);
    if (!row) return;
    row.className = `health-${camera.health}`;
    row.querySelector(".health").textContent = camera.health_label;
    const state = row.querySelector(".badge");
    state.className = `badge c-${camera.state}`;
    state.textContent = camera.state_label;
    const count = row.querySelector(".open-cases");
    if (count) count.textContent = camera.open_cases;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const svg = document.getElementById("map"), frame = document.getElementById("map-frame");
  const panel = document.getElementById("map-info"), source = document.getElementById("map-data");
  if (!svg || !source) return;
  let data = JSON.parse(source.textContent);
  const size = () => {
    const width = Math.max(280, Math.floor(frame.clientWidth));
    return [width, width < 600 ? Math.round(width * 1.05) : Math.min(620, Math.max(380, Math.round(width * 0.55)))];
  };
  const pick = (camera) => { showCamera(panel, camera, data); panel.classList.remove("hidden"); };
  const render = () => draw(svg, data, ...size(), pick);
  render();
  let pending;
  window.addEventListener("resize", () => { clearTimeout(pending); pending = setTimeout(render, 150); });
  const filters = document.getElementById("map-filter");
  filters.querySelectorAll("select, input[type=checkbox]").forEach((field) => {
    field.addEventListener("change", () => filters.requestSubmit());
  });
  setInterval(async () => {
    if (document.hidden) return;
    try {
      const response = await fetch(`/api/map${window.location.search}`, {
        credentials: "same-origin", headers: { "X-Patrol-Poll": "1" } });
      if (!response.ok) return;
      data = await response.json();
      document.getElementById("map-summary").textContent = data.summary;
      updateTable(data);
      render();
    } catch (error) { /* the next look tries again */ }
  }, REFRESH_MS);
});
