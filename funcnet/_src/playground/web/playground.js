// The Playground's page, drawn from frames that funcnet's server sends (see server.py).
// Plain browser JavaScript, no build step. The server trains; this file draws and asks.
"use strict";

const CLASSIFICATION = ["circle", "xor", "gauss", "spiral"];
const REGRESSION = ["reg-plane", "reg-gauss"];
const DATASET_NAMES = {circle: "Circle", xor: "Exclusive or", gauss: "Gaussian", spiral: "Spiral",
                       "reg-plane": "Plane", "reg-gauss": "Multi gaussian"};
const FEATURES = ["x", "y", "xSquared", "ySquared", "xTimesY", "sinX", "sinY"];
const FEATURE_LABELS = {x: "X\u2081", y: "X\u2082", xSquared: "X\u2081\u00b2", ySquared: "X\u2082\u00b2",
                        xTimesY: "X\u2081X\u2082", sinX: "sin(X\u2081)", sinY: "sin(X\u2082)"};
const MAX_LAYERS = 6, MAX_NEURONS = 8;

// The site's heat map colours (heatmap.ts): orange -> light grey -> blue over [-1, 1],
// quantised into 31 shades, drawn at alpha 160/255.
const ORANGE = [245, 147, 34], WHITE = [232, 234, 235], BLUE = [8, 119, 189];
const NUM_SHADES = 30;
function mix(a, b, t) { return a.map((v, i) => Math.round(v + (b[i] - v) * t)); }
function scaleColour(t) {  // t in [0, 1]
  t = Math.min(1, Math.max(0, t));
  return t <= 0.5 ? mix(ORANGE, WHITE, t / 0.5) : mix(WHITE, BLUE, (t - 0.5) / 0.5);
}
const SHADES = [];
for (let i = 0; i <= NUM_SHADES; i++) SHADES.push(scaleColour(i / NUM_SHADES));
function shadeOfByte(u) {  // u = round((v + 1) / 2 * 255) for v in [-1, 1]
  return SHADES[Math.min(NUM_SHADES, Math.floor((u / 255) * (NUM_SHADES + 1)))];
}
function shadeOfValue(v) { return shadeOfByte(Math.round((Math.max(-1, Math.min(1, v)) + 1) * 127.5)); }
function css(rgb) { return `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`; }

const $ = (id) => document.getElementById(id);
const state = {
  session: null, params: new URLSearchParams(), playing: false, generation: 0, frame: null,
  points: null, loss: [], testLoss: [], showTestData: false, networkKey: "",
};

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function post(action, body) {
  const response = await fetch(`api/${action}`, {method: "POST", body: JSON.stringify(body)});
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  return answer;
}

function currentFragment() {
  const params = new URLSearchParams(state.params);
  params.set("showTestData", String(state.showTestData));
  // URLSearchParams would escape the commas of networkShape; the site writes them plain.
  return Array.from(params.entries()).map(([k, v]) => `${k}=${v}`).join("&");
}

function writeFragment() {
  history.replaceState(null, "", `#${currentFragment()}`);
}

function takeFrame(answer, generation) {
  if (generation !== state.generation) return;  // a step that started before a change
  if (answer.points) state.points = answer.points;
  const frame = answer.frame;
  state.frame = frame;
  state.params = new URLSearchParams(frame.fragment);
  state.loss.length = frame.since;
  state.testLoss.length = frame.since;
  state.loss.push(...frame.loss);
  state.testLoss.push(...frame.test_loss);
  writeFragment();
  draw();
  if (frame.diverged) {
    setPlaying(false);
    showError("The losses stopped being finite: training diverged. Try a smaller learning rate.");
  }
}

async function request(action, body) {
  const generation = action === "step" ? state.generation : ++state.generation;
  try {
    const answer = await post(action, {session: state.session, ...body});
    if (action !== "step") showError("");
    takeFrame(answer, state.generation === generation ? generation : -1);
  } catch (error) {
    showError(error.message);
    if (action === "step") setPlaying(false);
    if (action === "change") { state.controlsFor = null; draw(); }  // back to the running settings
  }
}

function change(updates) {
  for (const [key, value] of Object.entries(updates)) state.params.set(key, String(value));
  writeFragment();
  return request("change", {fragment: currentFragment()});
}

function setPlaying(playing) {
  const wasPlaying = state.playing;
  state.playing = playing;
  $("play-pause-button").classList.toggle("playing", playing);
  if (playing && !wasPlaying) loop();
}

function askForStep(since) {
  return post("step", {session: state.session, since}).then(
    (answer) => ({answer}), (error) => ({error}));
}

async function loop() {
  // One frame in flight while the last one is drawn: the server trains the next epochs
  // while the browser paints, and trains only while a tab asks (a closed tab stops it).
  let generation = state.generation;
  let pending = askForStep(state.loss.length);
  while (state.playing) {
    const {answer, error} = await pending;
    if (!state.playing) break;
    if (error) { showError(error.message); setPlaying(false); break; }
    if (generation !== state.generation) {  // settings changed meanwhile: ask again
      generation = state.generation;
      pending = askForStep(state.loss.length);
      continue;
    }
    const since = answer.frame.epoch + 1;
    pending = answer.frame.diverged ? null : askForStep(since);
    takeFrame(answer, generation);
    if (!pending) break;
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

function decode(encoded) {
  const text = atob(encoded);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

function paint(canvas, encoded, discretize) {
  const bytes = decode(encoded);
  const side = Math.round(Math.sqrt(bytes.length));
  if (canvas.width !== side) { canvas.width = side; canvas.height = side; }
  const context = canvas.getContext("2d");
  const image = context.createImageData(side, side);
  for (let i = 0; i < bytes.length; i++) {
    const u = discretize ? (bytes[i] >= 128 ? 255 : 0) : bytes[i];
    const rgb = shadeOfByte(u);
    image.data.set([rgb[0], rgb[1], rgb[2], 160], 4 * i);
  }
  context.putImageData(image, 0, 0);
}

function formatEpoch(n) {
  const s = String(n).padStart(6, "0");
  return s.length > 6 ? s : `${s.slice(0, 3)},${s.slice(3)}`;
}

function shape() {
  const text = state.params.get("networkShape") || "";
  return text ? text.split(",").map(Number) : [];
}

function features() { return FEATURES.filter((f) => state.params.get(f) === "true"); }

function buildNetwork() {
  const key = `${features().join()}|${shape().join()}`;
  if (key === state.networkKey) return;
  state.networkKey = key;
  const featureColumn = $("features");
  featureColumn.innerHTML = "";
  for (const name of FEATURES) {
    const node = document.createElement("div");
    node.className = "node feature";
    node.dataset.feature = name;
    node.innerHTML = `<span class="name">${FEATURE_LABELS[name]}</span><canvas width="10" height="10"></canvas>`;
    node.title = `Click to turn ${name} on or off`;
    node.addEventListener("click", () => change({[name]: state.params.get(name) !== "true"}));
    featureColumn.appendChild(node);
  }
  const layers = $("hidden-layers");
  layers.innerHTML = "";
  shape().forEach((size, l) => {
    const column = document.createElement("div");
    column.className = "node-column hidden-layer";
    column.innerHTML = `<div class="layer-buttons"><button class="add-neuron" title="Add neuron">+</button>` +
      `<button class="remove-neuron" title="Remove neuron">&minus;</button><span>${size} neuron${size > 1 ? "s" : ""}</span></div>`;
    column.querySelector(".add-neuron").addEventListener("click", () => resize(l, +1));
    column.querySelector(".remove-neuron").addEventListener("click", () => resize(l, -1));
    for (let i = 0; i < size; i++) {
      const node = document.createElement("div");
      node.className = "node neuron";
      node.innerHTML = `<canvas width="10" height="10"></canvas>`;
      column.appendChild(node);
    }
    layers.appendChild(column);
  });
  const output = document.createElement("div");
  output.className = "node-column output-node";
  output.innerHTML = `<div class="layer-buttons"><span>output</span></div><div class="node"><canvas width="10" height="10"></canvas></div>`;
  layers.appendChild(output);
  $("num-layers").textContent = shape().length;
}

function resize(layer, delta) {
  const sizes = shape();
  sizes[layer] = Math.max(1, Math.min(MAX_NEURONS, sizes[layer] + delta));
  change({networkShape: sizes.join(",")});
}

function drawNetwork() {
  buildNetwork();
  const frame = state.frame;
  const active = features();
  const columns = [];  // the canvases of each column that has a frame column
  const featureNodes = Array.from(document.querySelectorAll(".feature"));
  featureNodes.forEach((node) => node.classList.toggle("inactive", !active.includes(node.dataset.feature)));
  columns.push(active.map((f) => featureNodes.find((n) => n.dataset.feature === f).querySelector("canvas")));
  document.querySelectorAll("#hidden-layers .node-column").forEach((column) => {
    columns.push(Array.from(column.querySelectorAll(".node canvas")));
  });
  frame.nodes.forEach((pictures, c) => pictures.forEach((picture, i) => {
    if (columns[c] && columns[c][i]) paint(columns[c][i], picture, false);
  }));
  // Inactive features still show their picture, as on the site.
  drawInactiveFeatures(featureNodes, active);
  drawLinks(columns, frame.weights);
}

function drawInactiveFeatures(nodes, active) {
  const side = 10;
  for (const node of nodes) {
    if (active.includes(node.dataset.feature)) continue;
    const canvas = node.querySelector("canvas");
    const context = canvas.getContext("2d");
    const image = context.createImageData(side, side);
    for (let r = 0; r < side; r++) for (let c = 0; c < side; c++) {
      const x = -6 + (12 * (c + 0.5)) / side, y = 6 - (12 * (r + 0.5)) / side;
      const value = {x, y, xSquared: x * x, ySquared: y * y, xTimesY: x * y, sinX: Math.sin(x), sinY: Math.sin(y)}[node.dataset.feature];
      const rgb = shadeOfValue(value);
      image.data.set([rgb[0], rgb[1], rgb[2], 160], 4 * (r * side + c));
    }
    context.putImageData(image, 0, 0);
  }
}

function drawLinks(columns, weights) {
  // The paths are laid out once per network shape (and window size); each frame only
  // recolours them: reading positions every frame would force a layout per frame.
  const svg = $("links");
  const hidden = Array.from(state.params.keys()).filter((k) => k.endsWith("_hide") && state.params.get(k) === "true");
  const key = `${state.networkKey}|${window.innerWidth}|${hidden.join()}`;
  if (state.linksKey !== key) {
    const body = $("network-body").getBoundingClientRect();
    const centre = (canvas, right) => {
      const box = canvas.getBoundingClientRect();
      return [(right ? box.right : box.left) - body.left, box.top + box.height / 2 - body.top];
    };
    const paths = [];
    weights.forEach((matrix, l) => matrix.forEach((row, i) => row.forEach((w, j) => {
      const from = columns[l] && columns[l][i], to = columns[l + 1] && columns[l + 1][j];
      if (!from || !to) return;
      const [x1, y1] = centre(from, true), [x2, y2] = centre(to, false);
      const mid = (x1 + x2) / 2;
      paths.push(`<path class="link" d="M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}"><title></title></path>`);
    })));
    svg.innerHTML = paths.join("");
    state.links = Array.from(svg.querySelectorAll("path"));
    state.linksKey = key;
  }
  let k = 0;
  for (const matrix of weights) for (const row of matrix) for (const w of row) {
    const path = state.links[k++];
    if (!path) continue;
    // The site's link width: |w| from 0 to 5 drawn 1 to 10 pixels wide; colour by sign and size.
    path.setAttribute("stroke", css(shadeOfValue(w)));
    path.setAttribute("stroke-width", (1 + (9 * Math.min(Math.abs(w), 5)) / 5).toFixed(2));
    path.dataset.weight = w;
    path.firstChild.textContent = `Weight is ${w.toFixed(3)}`;
  }
}

function drawHeatmap() {
  const canvas = $("heatmap"), context = canvas.getContext("2d");
  const cells = document.createElement("canvas");
  paint(cells, state.frame.output, $("discretize").checked);
  context.clearRect(0, 0, canvas.width, canvas.height);
  context.imageSmoothingEnabled = false;
  context.drawImage(cells, 0, 0, canvas.width, canvas.height);
  if (state.points) context.drawImage(pointsLayer(canvas), 0, 0);
}

function pointsLayer(canvas) {
  // The points change only with the data: drawn once into their own layer, reused per frame.
  const key = `${state.points.data_version}|${state.showTestData}|${state.session}`;
  if (state.pointsKey === key) return state.pointsCanvas;
  const layer = document.createElement("canvas");
  layer.width = canvas.width;
  layer.height = canvas.height;
  const context = layer.getContext("2d");
  const sets = [["train", "white"]];
  if (state.showTestData) sets.push(["test", "black"]);
  for (const [name, stroke] of sets) {
    for (const [x, y, label] of state.points[name]) {
      context.beginPath();
      context.arc(((x + 6) / 12) * canvas.width, ((6 - y) / 12) * canvas.height, 3, 0, 2 * Math.PI);
      context.fillStyle = css(shadeOfValue(label));
      context.fill();
      context.lineWidth = 1;
      context.strokeStyle = stroke;
      context.stroke();
    }
  }
  state.pointsKey = key;
  state.pointsCanvas = layer;
  return layer;
}

function drawChart() {
  // The site's line chart: test loss in black, training loss in grey, y over [min, max].
  const canvas = $("linechart"), context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  const all = state.loss.concat(state.testLoss).filter((v) => v !== null && isFinite(v));
  if (!all.length) return;
  let low = Math.min(...all), high = Math.max(...all);
  if (high === low) high = low + 1;
  const n = Math.max(state.loss.length - 1, 1);
  for (const [values, colour] of [[state.loss, "#777"], [state.testLoss, "black"]]) {
    context.beginPath();
    values.forEach((v, i) => {
      if (v === null) return;
      const x = (i / n) * (canvas.width - 2) + 1, y = canvas.height - 2 - ((v - low) / (high - low)) * (canvas.height - 4);
      if (i === 0) context.moveTo(x, y); else context.lineTo(x, y);
    });
    context.strokeStyle = colour;
    context.lineWidth = 1.5;
    context.stroke();
  }
}

function drawControls() {
  const p = state.params;
  for (const id of ["learningRate", "activation", "regularization", "regularizationRate", "problem"]) {
    const select = $(id), value = p.get(id);
    if (!Array.from(select.options).some((o) => o.value === value)) select.add(new Option(value, value));
    select.value = value;
  }
  for (const id of ["percTrainData", "noise", "batchSize"]) {
    $(id).value = p.get(id);
    $(`${id}-value`).textContent = p.get(id);
  }
  $("discretize").checked = p.get("discretize") === "true";
  $("show-test-data").checked = state.showTestData;
  const problem = p.get("problem");
  const chosen = problem === "regression" ? p.get("regDataset") : p.get("dataset");
  document.querySelectorAll("#datasets button").forEach((button) => {
    const regression = REGRESSION.includes(button.dataset.dataset);
    button.classList.toggle("hidden", regression !== (problem === "regression"));
    button.classList.toggle("selected", button.dataset.dataset === chosen);
  });
  // A link's <control>_hide=true hides that control, as on the site (e.g. x_hide, noise_hide).
  document.querySelectorAll("[data-ui], .feature").forEach((element) => {
    const name = element.dataset.ui || element.dataset.feature;
    element.style.display = p.get(`${name}_hide`) === "true" ? "none" : "";
  });
  $("add-layers").disabled = shape().length >= MAX_LAYERS;
  $("remove-layers").disabled = shape().length === 0;
}

function draw() {
  if (!state.frame) return;
  const frame = state.frame;
  $("iter-number").textContent = formatEpoch(frame.epoch);
  const last = (values) => values.length && values[values.length - 1] !== null ? values[values.length - 1].toFixed(3) : "NaN";
  $("loss-test").textContent = last(state.testLoss);
  $("loss-train").textContent = last(state.loss);
  buildNetwork();  // before the controls: they may hide some of its features
  if (state.controlsFor !== frame.fragment + state.showTestData) {
    drawControls();  // only when the settings changed: not on every frame
    state.controlsFor = frame.fragment + state.showTestData;
  }
  drawNetwork();
  drawHeatmap();
  drawChart();
  window.playgroundFramesDrawn = (window.playgroundFramesDrawn || 0) + 1;  // for measurements
}

function setUp() {
  for (const name of [...CLASSIFICATION, ...REGRESSION]) {
    const button = document.createElement("button");
    button.dataset.dataset = name;
    button.textContent = DATASET_NAMES[name];
    button.addEventListener("click", () => change(REGRESSION.includes(name) ? {regDataset: name} : {dataset: name}));
    $("datasets").appendChild(button);
  }
  $("play-pause-button").addEventListener("click", () => setPlaying(!state.playing));
  $("next-step-button").addEventListener("click", () => { setPlaying(false); request("step", {epochs: 1, since: state.loss.length}); });
  $("reset-button").addEventListener("click", () => { setPlaying(false); request("reset", {}); });
  $("data-regen-button").addEventListener("click", () => change({seed: Math.random().toFixed(5)}));
  for (const id of ["learningRate", "activation", "regularization", "regularizationRate", "problem"]) {
    $(id).addEventListener("change", () => change({[id]: $(id).value}));
  }
  for (const id of ["percTrainData", "noise", "batchSize"]) {
    $(id).addEventListener("input", () => { $(`${id}-value`).textContent = $(id).value; });
    $(id).addEventListener("change", () => change({[id]: $(id).value}));
  }
  $("add-layers").addEventListener("click", () => {
    if (shape().length < MAX_LAYERS) change({networkShape: [...shape(), 2].join(",")});
  });
  $("remove-layers").addEventListener("click", () => change({networkShape: shape().slice(0, -1).join(",")}));
  $("discretize").addEventListener("change", () => change({discretize: $("discretize").checked}));
  $("show-test-data").addEventListener("change", () => {
    state.showTestData = $("show-test-data").checked;
    writeFragment();
    draw();
  });
  window.addEventListener("hashchange", () => {
    // A link pasted into the address bar: its settings, as on the site.
    const fragment = location.hash.slice(1);
    if (fragment && fragment !== currentFragment()) {
      state.showTestData = new URLSearchParams(fragment).get("showTestData") === "true";
      request("change", {fragment});
    }
  });
  window.addEventListener("pagehide", () => {
    // The tab is closing: its training stops at once (it would expire anyway).
    if (state.session) navigator.sendBeacon("api/stop", JSON.stringify({session: state.session}));
  });
  window.addEventListener("resize", () => state.frame && drawNetwork());
}

async function start() {
  setUp();
  const fragment = location.hash.slice(1);
  state.showTestData = new URLSearchParams(fragment).get("showTestData") === "true";
  try {
    const answer = await post("start", {fragment});
    state.session = answer.session;
    takeFrame(answer, state.generation);
  } catch (error) {
    showError(`${error.message} (the Playground's defaults are used instead)`);
    const answer = await post("start", {fragment: ""});
    state.session = answer.session;
    takeFrame(answer, state.generation);
  }
  document.body.dataset.ready = "true";
}

start();
