// labelserve's page: pick or drop images, see each one's labels as bars, the predicted set under a threshold that
// re-decides without a new request, and any label's attention map over the image. It talks only to this server's
// own API (/models, /predict, and the statistics extension for the health view), sending the API key, when one is
// typed, as X-API-Key.

import { refreshHealthSoon, showHealth, wireHealth } from "./health.js";

const MAX_LABELS_WITH_EVERY_MAP = 64; // up to this many labels, the page asks for every label's attention map
const ROWS_BEFORE_MORE = 20; // label rows shown before "show all"
const CANVAS_SIDE = 720; // longer side of the drawn image, in canvas pixels
const PALETTE = ["#ef4444", "#10b981", "#3b82f6", "#f59e0b", "#a855f7", "#06b6d4", "#ec4899", "#84cc16",
                 "#f97316", "#6366f1"];
const KEY_STORAGE = "labelserve.apiKey";

const state = { models: [], model: null, threshold: null, opacity: 0.6, files: [], cards: [] };
const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// ---- the API ------------------------------------------------------------------------------------------------------

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (!response.ok) {
    throw await apiError(response);
  }
  return response.json();
}

async function apiError(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON (a proxy's error page): fall back to the status line
  }
  const message = body && body.error ? body.error : `${response.status} ${response.statusText}`;
  return new ApiError(response.status, body && body.code ? body.code : `http_${response.status}`, message);
}

/**
 * One attention map as /predict sends it -> {width, height, values} with values 0..255, row-major.
 * Today the API sends a base64 8-bit greyscale PNG; this is the one place to change if that encoding changes.
 */
async function decodeAttention(encoded) {
  const image = new Image();
  image.src = `data:image/png;base64,${encoded}`;
  await image.decode();
  const { naturalWidth: width, naturalHeight: height } = image;
  const scratch = new OffscreenCanvas(width, height).getContext("2d", { willReadFrequently: true });
  scratch.drawImage(image, 0, 0);
  const rgba = scratch.getImageData(0, 0, width, height).data;
  const values = new Uint8ClampedArray(width * height);
  for (let i = 0; i < values.length; i += 1) {
    values[i] = rgba[4 * i];
  }
  return { width, height, values };
}

// ---- models -------------------------------------------------------------------------------------------------------

async function loadModels() {
  showError(null);
  $("model-info").textContent = "Loading models…";
  try {
    state.models = (await api("/models")).models;
  } catch (error) {
    state.models = [];
    $("model").replaceChildren();
    $("model-info").textContent = error.status === 401 ? "This server needs an API key: type it above."
      : "No model to show.";
    showError(error);
    return;
  }
  const select = $("model");
  select.replaceChildren(...state.models.map((model, index) => {
    const option = document.createElement("option");
    option.value = String(index);
    option.textContent = `${model.name} v${model.version}`;
    return option;
  }));
  selectModel(0);
}

function selectModel(index) {
  state.model = state.models[index] || null;
  const model = state.model;
  if (!model) {
    $("model-info").textContent = "This server serves no model yet.";
    return;
  }
  const info = $("model-info");
  info.replaceChildren();
  const name = document.createElement("strong");
  name.textContent = `${model.name} v${model.version}`;
  info.append(name, document.createTextNode(
    ` · ${model.task} · ${model.labels.length} labels · ${model.input.width}×${model.input.height} input · ` +
    `${model.attention ? "attention maps" : "no attention output"} · ${model.engine}, batches of up to ` +
    `${model.max_batch_size}`));
  if (model.calibration) {
    info.append(calibrationNote(model));
  }
  $("opacity-control").hidden = !model.attention;
  showHealth(model, authHeaders);
}

function calibrationNote(model) {
  // a version recalibrated from feedback (`labelserve calibrate`): where from, and what it changed on held-out answers
  const c = model.calibration;
  const f1 = (value) => (value === null || value === undefined ? "–" : value.toFixed(3));
  const note = document.createElement("span");
  note.className = "calibration";
  note.dataset.source = String(c.source_version);
  note.append(document.createTextNode(
    ` · thresholds recalibrated from v${c.source_version} on ${c.answers} answers with feedback (${c.policy}): ` +
    `held-out micro F1 ${f1(c.micro_f1_before)} → ${f1(c.micro_f1_after)}, ${c.labels_changed} labels changed · `));
  const link = document.createElement("a");
  link.href = `/models/${encodeURIComponent(model.name)}/versions/${model.version}/calibration`;
  link.textContent = "per-label report";
  link.target = "_blank";
  note.append(link);
  return note;
}

function thresholdOf(label) {
  if (state.threshold !== null) {
    return state.threshold;
  }
  const index = state.model.labels.indexOf(label);
  return index >= 0 ? state.model.thresholds[index] : 0.5;
}

function swatchOf(label) {
  return PALETTE[Math.max(0, state.model.labels.indexOf(label)) % PALETTE.length];
}

// ---- predicting ---------------------------------------------------------------------------------------------------

async function predict(files) {
  if (!files.length || !state.model) {
    return;
  }
  state.files = files;
  const model = state.model;
  const everyMap = model.attention && model.labels.length <= MAX_LABELS_WITH_EVERY_MAP;
  const form = new FormData();
  for (const file of files) {
    form.append("files", file, file.name);
  }
  form.append("model", model.name);
  form.append("version", String(model.version));
  form.append("attention", model.attention ? "true" : "false");
  if (everyMap) {
    form.append("threshold", "0"); // maps of every label; the page decides what is predicted itself
  }
  showError(null);
  document.body.dataset.busy = "true";
  $("status").textContent = `Labelling ${files.length} image${files.length > 1 ? "s" : ""}…`;
  const started = performance.now();
  try {
    const answer = await api("/predict", { method: "POST", body: form });
    const latencyMs = performance.now() - started;
    await showResults(answer, files, model);
    showStatus(answer, latencyMs, model);
    refreshHealthSoon();
  } catch (error) {
    $("status").textContent = "";
    showError(error);
  } finally {
    delete document.body.dataset.busy;
  }
}

function showStatus(answer, latencyMs, model) {
  const status = $("status");
  status.replaceChildren();
  const latency = document.createElement("strong");
  latency.textContent = `${Math.round(latencyMs)} ms`;
  const count = answer.results.length;
  status.append(document.createTextNode(`${count} image${count > 1 ? "s" : ""} in one request · `), latency);
  status.title = `answered by ${answer.model} v${answer.version} on ${model.engine}, which runs batches of up to ` +
    `${model.max_batch_size} images`;
}

async function showResults(answer, files, model) {
  const cards = await Promise.all(answer.results.map((result, index) => buildCard(result, files[index], model)));
  state.cards = cards;
  $("results").replaceChildren(...cards.map((card) => card.element));
  $("toolbar").hidden = false;
  for (const card of cards) {
    renderLabels(card);
    drawCard(card);
  }
}

// ---- one image's card ---------------------------------------------------------------------------------------------

async function buildCard(result, file, model) {
  const bitmap = await createImageBitmap(file);
  const element = document.createElement("article");
  element.className = "card";
  element.dataset.filename = result.filename;

  const visual = document.createElement("div");
  visual.className = "visual";
  const canvas = document.createElement("canvas");
  const scale = CANVAS_SIDE / Math.max(bitmap.width, bitmap.height);
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  const caption = document.createElement("div");
  caption.className = "caption";
  const title = document.createElement("strong");
  title.textContent = result.filename;
  caption.append(title, document.createTextNode(` · ${result.width}×${result.height}`));
  const legend = document.createElement("div");
  legend.className = "legend";
  visual.append(canvas, caption, legend);

  const labels = document.createElement("div");
  labels.className = "labels";
  const predicted = document.createElement("div");
  predicted.className = "predicted";
  const bars = document.createElement("ol");
  bars.className = "bars";
  labels.append(predicted, bars);
  element.append(visual, labels);

  return { element, canvas, legend, predicted, bars, bitmap, result, model, showAll: false, overlays: new Set(),
           maps: new Map(), drawing: 0 };
}

function renderLabels(card) {
  const { result } = card;
  const decided = result.labels.filter((label) => label.probability >= thresholdOf(label.name));
  card.predicted.replaceChildren(Object.assign(document.createElement("span"), {
    className: "heading", textContent: "Predicted" }));
  if (decided.length === 0) {
    card.predicted.append(Object.assign(document.createElement("span"), {
      className: "none", textContent: "nothing at this threshold" }));
  }
  for (const label of decided) {
    card.predicted.append(Object.assign(document.createElement("span"), { className: "chip", textContent: label.name }));
  }
  const shown = card.showAll ? result.labels : result.labels.slice(0, ROWS_BEFORE_MORE);
  card.bars.replaceChildren(...shown.map((label) => labelRow(card, label)));
  if (shown.length < result.labels.length) {
    const more = Object.assign(document.createElement("button"), {
      type: "button", className: "link more", textContent: `show all ${result.labels.length} labels` });
    more.addEventListener("click", () => {
      card.showAll = true;
      renderLabels(card);
    });
    card.bars.append(more);
  }
}

function labelRow(card, label) {
  const threshold = thresholdOf(label.name);
  const row = document.createElement("li");
  row.className = "bar-row";
  row.classList.toggle("is-predicted", label.probability >= threshold);
  row.dataset.label = label.name;
  row.dataset.probability = String(label.probability);

  const eye = document.createElement("button");
  eye.type = "button";
  eye.className = "eye";
  eye.style.setProperty("--swatch", swatchOf(label.name));
  const hasMap = Boolean(card.result.attention && card.result.attention[label.name]);
  eye.disabled = !hasMap;
  eye.title = hasMap ? `show where the model looked for ${label.name}` : "no attention map for this label";
  eye.setAttribute("aria-label", `attention of ${label.name}`);
  eye.setAttribute("aria-pressed", String(card.overlays.has(label.name)));
  eye.addEventListener("click", () => toggleOverlay(card, label.name, eye));

  const name = Object.assign(document.createElement("span"), { className: "name", textContent: label.name,
                                                               title: label.name });
  const track = Object.assign(document.createElement("span"), { className: "track" });
  const fill = Object.assign(document.createElement("span"), { className: "fill" });
  fill.style.width = `${(label.probability * 100).toFixed(2)}%`;
  const tick = Object.assign(document.createElement("span"), { className: "tick",
                                                               title: `threshold ${threshold.toFixed(2)}` });
  tick.style.left = `${(threshold * 100).toFixed(2)}%`;
  track.append(fill, tick);
  const value = Object.assign(document.createElement("span"), { className: "value",
                                                                textContent: formatProbability(label.probability) });
  row.append(eye, name, track, value);
  return row;
}

function formatProbability(probability) {
  const percent = probability * 100;
  return percent >= 99.95 || percent < 0.05 ? `${percent.toFixed(2)}%` : `${percent.toFixed(1)}%`;
}

function toggleOverlay(card, label, button) {
  if (card.overlays.has(label)) {
    card.overlays.delete(label);
  } else {
    card.overlays.add(label);
  }
  button.setAttribute("aria-pressed", String(card.overlays.has(label)));
  drawCard(card);
}

/** The decoded attention map of `label` for this card (decoded once). */
function mapOf(card, label) {
  if (!card.maps.has(label)) {
    card.maps.set(label, decodeAttention(card.result.attention[label]));
  }
  return card.maps.get(label);
}

/**
 * Two layers at the maps' size from the shown labels' maps: a veil that dims where no shown label looks, and each
 * label's colour where it looks (mixed by weight where several overlap), so the attended regions stand out.
 */
function attentionLayers(maps, colours) {
  const { width, height } = maps[0];
  const veil = new ImageData(width, height);
  const tint = new ImageData(width, height);
  for (let i = 0; i < width * height; i += 1) {
    let peak = 0;
    let total = 0;
    let red = 0;
    let green = 0;
    let blue = 0;
    maps.forEach((map, m) => {
      const value = map.values[i] / 255;
      peak = Math.max(peak, value);
      total += value;
      red += value * colours[m][0];
      green += value * colours[m][1];
      blue += value * colours[m][2];
    });
    veil.data.set([15, 23, 42, Math.round(255 * (1 - peak))], 4 * i);
    if (total > 0) {
      tint.data.set([red / total, green / total, blue / total, Math.round(255 * peak ** 1.5)], 4 * i);
    }
  }
  return [veil, tint].map((pixels) => {
    const layer = new OffscreenCanvas(width, height);
    layer.getContext("2d").putImageData(pixels, 0, 0);
    return layer;
  });
}

function hexToRgb(hex) {
  const value = Number.parseInt(hex.slice(1), 16);
  return [(value >> 16) & 255, (value >> 8) & 255, value & 255];
}

async function drawCard(card) {
  const generation = ++card.drawing;
  const labels = [...card.overlays];
  const maps = await Promise.all(labels.map((label) => mapOf(card, label)));
  if (generation !== card.drawing) {
    return; // a newer toggle or opacity change is drawing
  }
  const { width, height } = card.canvas;
  const context = card.canvas.getContext("2d");
  context.imageSmoothingQuality = "high";
  context.globalAlpha = 1;
  context.drawImage(card.bitmap, 0, 0, width, height);
  if (maps.length) {
    const [veil, tint] = attentionLayers(maps, labels.map((label) => hexToRgb(swatchOf(label))));
    context.globalAlpha = state.opacity * 0.75;
    context.drawImage(veil, 0, 0, width, height);
    context.globalAlpha = state.opacity;
    context.drawImage(tint, 0, 0, width, height);
    context.globalAlpha = 1;
  }
  card.legend.replaceChildren(...labels.map((label) => {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = swatchOf(label);
    item.append(swatch, document.createTextNode(label));
    return item;
  }));
  card.canvas.dataset.overlays = labels.join(",");
}

// ---- errors and controls ------------------------------------------------------------------------------------------

function showError(error) {
  const box = $("error");
  box.replaceChildren();
  box.hidden = !error;
  if (!error) {
    return;
  }
  if (error instanceof ApiError) {
    const code = document.createElement("code");
    code.textContent = `${error.status} ${error.code}`;
    box.append(code, document.createTextNode(" "));
    box.dataset.status = String(error.status);
  }
  box.append(document.createTextNode(error instanceof ApiError ? error.message
    : `The server could not be reached: ${error.message}`));
}

function onThreshold(value) {
  state.threshold = value;
  $("threshold-value").textContent = value === null ? "per label, from the model" : `${value.toFixed(2)} for every label`;
  $("threshold-reset").hidden = value === null;
  for (const card of state.cards) {
    renderLabels(card);
  }
}

function wireControls() {
  const keyInput = $("api-key");
  keyInput.value = sessionStorage.getItem(KEY_STORAGE) || "";
  keyInput.addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORAGE, keyInput.value.trim());
    loadModels();
  });
  $("settings").addEventListener("submit", (event) => {
    event.preventDefault();
    keyInput.dispatchEvent(new Event("change"));
  });
  $("model").addEventListener("change", (event) => {
    selectModel(Number(event.target.value));
    predict(state.files);
  });
  $("files").addEventListener("change", (event) => {
    const files = [...event.target.files];
    event.target.value = ""; // so picking the same file again is a new change
    predict(files);
  });
  $("threshold").addEventListener("input", (event) => onThreshold(Number(event.target.value)));
  $("threshold-reset").addEventListener("click", () => onThreshold(null));
  $("opacity").addEventListener("input", (event) => {
    state.opacity = Number(event.target.value);
    $("opacity-value").textContent = `${Math.round(state.opacity * 100)}%`;
    for (const card of state.cards) {
      drawCard(card);
    }
  });
  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) {
    document.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("dragging");
    });
  }
  document.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("dragging");
    predict([...event.dataTransfer.files]);
  });
}

wireControls();
wireHealth();
loadModels();
