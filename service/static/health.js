// The page's model-health view: each label of the selected model version, how often it is given now against how
// often it was given on the validation split (the bundle's baseline), its drift score, and, when a shadow version
// runs, how often the candidate decides each label differently. Read from Triton's statistics extension
// (/v2/models/{name}/versions/{v}/stats), refreshed every few seconds while the view is open.

const REFRESH_MS = 5000;
const ROWS_BEFORE_MORE = 12;

const $ = (id) => document.getElementById(id);
let current = null; // {model, headers}
let timer = null;
let showAll = false;

export function showHealth(model, headers) {
  current = model ? { model, headers } : null;
  refresh();
}

export function refreshHealthSoon() {
  window.setTimeout(refresh, 300);
}

async function refresh() {
  window.clearTimeout(timer);
  const view = $("health");
  if (!current || !view.open) {
    return;
  }
  const { model, headers } = current;
  try {
    const response = await fetch(`/v2/models/${encodeURIComponent(model.name)}/versions/${model.version}/stats`,
                                 { headers: headers() });
    const body = await response.json();
    if (!response.ok) {
      throw new Error(body.error || `${response.status}`);
    }
    render(body.model_stats[0]);
  } catch (error) {
    $("health-summary").textContent = `Health unavailable: ${error.message}`;
  }
  timer = window.setTimeout(refresh, REFRESH_MS);
}

function percent(value) {
  return value === null || value === undefined ? "–" : `${(100 * value).toFixed(1)}%`;
}

function render(entry) {
  const stats = entry.label_stats;
  const summary = $("health-summary");
  summary.dataset.status = stats.status;
  if (stats.status === "off") {
    summary.textContent = "Label monitoring is switched off on this server (LABELSERVE_MONITOR_LABELS).";
    $("health-labels").replaceChildren();
    return;
  }
  const words = {
    ok: "every label answers like on the validation split",
    drift: `${stats.flagged.length} label${stats.flagged.length === 1 ? "" : "s"} drifted: ${stats.flagged.join(", ")}`,
    "warming up": `collecting answers: ${stats.window_images} of the ${stats.min_images} needed before judging`,
    "no baseline": "this bundle has no baseline (exported before 2026-12 or without validation images): served " +
      "rates only",
  };
  summary.textContent = `${words[stats.status]} · ${stats.window_images} answers in the window` +
    (stats.baseline_images ? ` · baseline of ${stats.baseline_images} validation images` : "") +
    (stats.served_labels_per_image !== null ? ` · ${stats.served_labels_per_image.toFixed(2)} labels per image now` +
      (stats.baseline_labels_per_image !== null ? `, ${stats.baseline_labels_per_image.toFixed(2)} on validation`
        : "") : "");
  const flips = new Map((entry.shadow ? entry.shadow.labels : []).map((label) => [label.name, label]));
  const rows = showAll ? stats.labels : stats.labels.slice(0, ROWS_BEFORE_MORE);
  const table = $("health-labels");
  table.replaceChildren(header(entry.shadow), ...rows.map((label) => row(label, flips.get(label.name))));
  const more = $("health-more");
  more.hidden = stats.labels.length <= ROWS_BEFORE_MORE;
  more.textContent = showAll ? "show the most drifted only" : `show all ${stats.labels.length} labels`;
}

function header(shadow) {
  const tr = document.createElement("tr");
  const names = ["label", "given now / on validation", "drift (PSI)"];
  if (shadow) {
    names.push(`v${shadow.candidate_version} decides differently`);
  }
  tr.append(...names.map((name) => Object.assign(document.createElement("th"), { textContent: name })));
  return tr;
}

function row(label, flip) {
  const tr = document.createElement("tr");
  tr.className = label.flagged ? "flagged" : "";
  tr.dataset.label = label.name;
  const name = Object.assign(document.createElement("td"), { textContent: label.name });
  const rates = document.createElement("td");
  rates.className = "rates";
  rates.append(bar("served", label.served_rate), bar("baseline", label.baseline_rate));
  rates.title = `given to ${percent(label.served_rate)} of the answers now, ${percent(label.baseline_rate)} of ` +
    "the validation images";
  const drift = Object.assign(document.createElement("td"), {
    className: "drift", textContent: label.drift === null ? "–" : label.drift.toFixed(3) });
  if (label.flagged) {
    drift.append(Object.assign(document.createElement("span"), { className: "badge", textContent: "drifted" }));
  }
  tr.append(name, rates, drift);
  if (flip) {
    tr.append(Object.assign(document.createElement("td"), { textContent: percent(flip.flip_rate) }));
  }
  return tr;
}

function bar(kind, value) {
  const track = Object.assign(document.createElement("span"), { className: `rate ${kind}` });
  const fill = document.createElement("span");
  fill.style.width = `${Math.round(100 * (value || 0))}%`;
  const text = Object.assign(document.createElement("em"), { textContent: percent(value) });
  track.append(fill, text);
  return track;
}

export function wireHealth() {
  $("health").addEventListener("toggle", refresh);
  $("health-more").addEventListener("click", () => {
    showAll = !showAll;
    refresh();
  });
}
