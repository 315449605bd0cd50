// The explorer page: plain JavaScript, no build step.  Every picture is a PNG from the server;
// z lives in this page's address (#z=...&label=...), so a reload or a shared link shows the same image.
"use strict";

const GRID_COUNT = 16;
const $ = (id) => document.getElementById(id);
const state = { info: null, seed: 0, samples: null, z: null, label: null, psi: null, a: null, b: null,
  groups: { a: [], b: [], c: [] } };

function showError(message) { $("status").textContent = message; }

async function explainFailure(url) {
  // An <img> that failed to load says nothing: ask the server again for its JSON message.
  try { const answer = await fetch(url); if (!answer.ok) showError((await answer.json()).error); } catch (e) { showError(String(e)); }
}

function setImage(img, url) {
  img.onerror = () => explainFailure(url);
  img.src = url;
}

const zText = (z) => z.map((v) => +v.toFixed(4)).join(",");

function labelQuery(label) { return label === null || label === undefined ? "" : `&label=${label}`; }

// The truncation psi of a style generator (null for the others, which refuse it).
function psiQuery() { return state.psi === null ? "" : `&psi=${state.psi}`; }

function selectedUrl() { return `/api/image?z=${zText(state.z)}${labelQuery(state.label)}${psiQuery()}`; }

function renderSelected() {
  if (!state.z) return;
  const url = selectedUrl();
  setImage($("selected"), url);
  $("save").href = url;
  $("z-text").value = JSON.stringify(state.z.map((v) => +v.toFixed(4)));
  history.replaceState(null, "", `#z=${zText(state.z)}${labelQuery(state.label)}&seed=${state.seed}${psiQuery()}`);
  for (const slider of $("sliders").querySelectorAll("input")) {
    slider.value = state.z[+slider.dataset.dim];
    slider.nextElementSibling.textContent = (+slider.value).toFixed(2);
  }
  if (state.label !== null) $("class").value = state.label;
}

function buildSliders() {
  const range = state.info.z_dist === "uniform" ? 1 : 3;
  const dims = $("dims").value.split(",").map((d) => parseInt(d, 10)).filter((d) => d >= 0 && d < state.info.z_dim);
  $("sliders").replaceChildren(...dims.map((dim) => {
    const label = document.createElement("label");
    label.textContent = `z[${dim}] `;
    const slider = Object.assign(document.createElement("input"),
      { type: "range", min: -range, max: range, step: 0.01, value: state.z ? state.z[dim] : 0 });
    slider.dataset.dim = dim;
    slider.addEventListener("input", () => { if (state.z) { state.z[dim] = +slider.value; renderSelected(); } });
    label.append(slider, Object.assign(document.createElement("span"), { textContent: (+slider.value).toFixed(2) }));
    return label;
  }));
}

function samplesQuery() {
  const classQuery = $("grid-class").value === "" ? "" : `&label=${$("grid-class").value}`;
  return `count=${GRID_COUNT}&seed=${state.seed}${classQuery}`;
}

async function newSamples(seed) {
  state.seed = seed;
  const answer = await fetch(`/api/samples?${samplesQuery()}`);
  if (!answer.ok) { showError((await answer.json()).error); return; }
  state.samples = await answer.json();
  setImage($("grid"), `/api/grid?${samplesQuery()}${psiQuery()}`);
  if (!state.z) selectSample(0);
}

function selectSample(index) {
  state.z = state.samples.z[index].slice();
  state.label = state.samples.labels ? state.samples.labels[index] : null;
  renderSelected();
}

function gridClick(event) {
  // The grid is utils.image_grid's layout: ceil(sqrt(n)) columns, 1 px between cells.
  const img = event.currentTarget, cols = Math.ceil(Math.sqrt(GRID_COUNT));
  const x = event.offsetX * img.naturalWidth / img.clientWidth, y = event.offsetY * img.naturalHeight / img.clientHeight;
  const index = Math.floor(y / (state.info.height + 1)) * cols + Math.floor(x / (state.info.width + 1));
  if (state.samples && x >= 0 && y >= 0 && index < state.samples.z.length) selectSample(index);
}

function renderInterpolation() {
  const t = (+$("scrub").value).toFixed(2);
  $("t-value").textContent = t;
  if (!state.a || !state.b) return;
  setImage($("interp"), `/api/interpolate?a=${zText(state.a)}&b=${zText(state.b)}&t=${t}&mode=${$("mode").value}` +
    labelQuery(state.label) + psiQuery());
}

async function computeArithmetic() {
  const body = { a: state.groups.a, b: state.groups.b, c: state.groups.c };
  if (state.label !== null) body.label = state.label;
  if (state.psi !== null) body.psi = state.psi;
  const answer = await fetch("/api/arithmetic", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  if (!answer.ok) { showError((await answer.json()).error); return; }
  setImage($("arith"), URL.createObjectURL(await answer.blob()));
}

function fromAddress() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has("seed")) state.seed = parseInt(params.get("seed"), 10) || 0;
  if (params.has("z")) {
    state.z = params.get("z").split(",").map(Number);
    state.label = params.has("label") ? parseInt(params.get("label"), 10) : null;
  }
  if (params.has("psi") && state.info.truncation) state.psi = Number(params.get("psi"));
}

function showPsi() {
  $("psi").value = state.psi;
  $("psi-value").textContent = state.psi.toFixed(2);
}

async function start() {
  // Each image names the src it shows (the browser test waits for it to equal the src attribute).  Registered
  // first, so this listener runs before any other of the load event.
  for (const img of document.querySelectorAll("img")) {
    img.addEventListener("load", () => { img.dataset.loaded = img.getAttribute("src"); });
  }
  const answer = await fetch("/api/info");
  state.info = await answer.json();
  const info = state.info;
  $("info").textContent = `z: ${info.z_dim} dims, ${info.z_dist}; ${info.width}×${info.height}×${info.channels}` +
    (info.classes ? `; ${info.classes} classes` : "") + ` — ${info.source}`;
  for (let c = 0; c < info.classes; c++) {
    $("class").append(new Option(String(c), String(c)));
    $("grid-class").append(new Option(String(c), String(c)));
  }
  $("class").closest("label").hidden = !info.classes;
  $("grid-class").closest("label").hidden = !info.classes;
  $("dims").value = [...Array(Math.min(4, info.z_dim)).keys()].join(",");
  $("psi-control").hidden = !info.truncation;
  if (info.truncation) {
    state.psi = info.psi;
    Object.assign($("psi"), { min: -info.max_abs_psi, max: info.max_abs_psi });
  }
  fromAddress();
  if (info.truncation) showPsi();
  buildSliders();
  renderSelected();
  await newSamples(state.seed);

  $("new-samples").addEventListener("click", () => newSamples(Math.floor(Math.random() * 2147483647)));
  $("grid-class").addEventListener("change", () => newSamples(state.seed));
  $("grid").addEventListener("click", gridClick);
  $("dims").addEventListener("change", buildSliders);
  $("class").addEventListener("change", () => { state.label = +$("class").value; renderSelected(); });
  $("copy-z").addEventListener("click", () => {
    $("z-text").select();
    if (navigator.clipboard) navigator.clipboard.writeText($("z-text").value).catch(() => {});
  });
  $("set-a").addEventListener("click", () => { state.a = state.z.slice(); renderInterpolation(); });
  $("set-b").addEventListener("click", () => { state.b = state.z.slice(); renderInterpolation(); });
  $("scrub").addEventListener("input", renderInterpolation);
  $("mode").addEventListener("change", renderInterpolation);
  $("psi").addEventListener("input", () => {
    state.psi = +$("psi").value;
    showPsi();
    setImage($("grid"), `/api/grid?${samplesQuery()}${psiQuery()}`);
    renderSelected();
    renderInterpolation();
  });
  for (const group of ["a", "b", "c"]) {
    $(`add-${group}`).addEventListener("click", () => {
      state.groups[group].push(state.z.slice());
      $(`count-${group}`).textContent = state.groups[group].length;
    });
  }
  $("compute-arith").addEventListener("click", computeArithmetic);
  $("clear-arith").addEventListener("click", () => {
    for (const group of ["a", "b", "c"]) { state.groups[group] = []; $(`count-${group}`).textContent = "0"; }
  });
}

// The end-to-end test awaits this promise rather than polling the page.
window.explorerReady = start().catch((e) => showError(String(e)));
