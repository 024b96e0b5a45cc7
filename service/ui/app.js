// rnnserve's page: lists the models and lets a person try each one, showing the attention.
// Plain JavaScript, no framework, no build step. It uses only the public V1 API:
//   GET /v1/models, GET /v1/models/{name}, POST /v1/models/{name}:predict.
// Each task ("classify", "seq2seq", "forecast") is one entry of TASKS: how to read the input
// a person types, some examples, and how to draw a prediction. A task without an entry still
// works: the input is sent as typed (or as JSON) and the prediction is shown as JSON.

const API = "v1/models"; // relative: works at /, at /ui and behind a path prefix
// The SVG namespace, as the HTML parser assigns it (so no address is spelled out here).
const SVG = new DOMParser()
  .parseFromString("<svg></svg>", "text/html")
  .querySelector("svg").namespaceURI;

const $ = (id) => document.getElementById(id);
const els = {
  refresh: $("refresh"),
  modelsStatus: $("models-status"),
  models: $("models"),
  tryPanel: $("try"),
  form: $("try-form"),
  model: $("model"),
  modelSummary: $("model-summary"),
  instance: $("instance"),
  instanceLabel: $("instance-label"),
  instanceHelp: $("instance-help"),
  examples: $("examples"),
  exampleButtons: $("example-buttons"),
  submit: $("submit"),
  pending: $("pending"),
  result: $("result"),
};

const state = { models: new Map(), selected: null, request: null, pollTimer: null };

// ---------------------------------------------------------------- small helpers

/** Create an element: el("p", {class: "x", text: "hi"}, child, ...). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  setAttrs(node, attrs);
  for (const child of children.flat()) if (child) node.append(child);
  return node;
}

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "vars") {
      for (const [name, v] of Object.entries(value)) node.style.setProperty(name, v);
    } else node.setAttribute(key, value === true ? "" : value);
  }
}

const isNumber = (x) => typeof x === "number" && Number.isFinite(x);

function percent(x, digits = 1) {
  return isNumber(x) ? `${(x * 100).toFixed(digits)} %` : "?";
}

/** A probability as a percentage that never rounds a near-certainty to 100 % or 0 %. */
function probability(x) {
  if (isNumber(x) && x > 0.999 && x < 1) return ">99.9 %";
  if (isNumber(x) && x < 0.001 && x > 0) return "<0.1 %";
  return percent(x);
}

function formatNumber(x) {
  if (!isNumber(x)) return String(x);
  if (Number.isInteger(x)) return x.toLocaleString("en");
  const abs = Math.abs(x);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return x.toExponential(2);
  return String(Number(x.toPrecision(4)));
}

/** A weight from an attention entry: a number, or a [token, weight] pair. */
function weightOf(entry) {
  if (isNumber(entry)) return entry;
  if (Array.isArray(entry) && isNumber(entry[entry.length - 1])) return entry[entry.length - 1];
  if (entry && typeof entry === "object" && isNumber(entry.weight)) return entry.weight;
  return 0;
}

/** Weights scaled so the largest is 1: the most attended item is shaded fully. */
function normalise(weights) {
  const max = Math.max(0, ...weights.filter(isNumber));
  return weights.map((w) => (max > 0 && isNumber(w) ? Math.max(0, w) / max : 0));
}

const shownChar = (c) => (c === " " ? "␣" : c === "\t" ? "⇥" : c === "\n" ? "↵" : c);

function errorBox(message) {
  return el("p", { class: "error", role: "alert", text: message });
}

// ---------------------------------------------------------------- the API

class ApiError extends Error {}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { headers: { Accept: "application/json" }, ...options });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(`Could not reach the server (${error.message}).`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: described below by the status
  }
  if (!response.ok) {
    const why = body && typeof body.error === "string" ? body.error : response.statusText;
    throw new ApiError(`${response.status}: ${why || "the server refused the request"}`);
  }
  if (body === null) throw new ApiError(`${response.status}: the answer was not JSON`);
  return body;
}

const modelPath = (name) => `${API}/${encodeURIComponent(name)}`;

// ---------------------------------------------------------------- tasks

// Series to pick, as long as the model's window (48 values when its manifest does not say).
const SERIES_EXAMPLES = {
  seasonal: (i) => 10 + 4 * Math.sin((2 * Math.PI * i) / 12) + 0.08 * i,
  trend: (i) => 3 + 0.5 * i + 1.5 * Math.sin(i * 1.7) * Math.cos(i * 0.45),
  steps: (i) => [2, 2, 2, 6, 6, 6, 4, 4, 4][i % 9],
};

function seriesExamples(model) {
  const pre = model?.manifest?.preprocessing || {};
  let length = Math.max(48, isNumber(pre.window) ? pre.window : 0);
  if (isNumber(pre.max_values)) length = Math.min(length, pre.max_values);
  return Object.entries(SERIES_EXAMPLES).map(([name, value]) => ({
    name,
    value: Array.from({ length }, (_, i) => Number(value(i).toFixed(2))).join(", "),
  }));
}

const TASKS = {
  classify: {
    name: "text classifier",
    label: "Text to classify",
    placeholder: "a gripping, beautifully acted film",
    examples: [
      "a gripping, beautifully acted film",
      "dull and far too long",
      "not bad at all, though the ending drags",
    ],
    parse: (text) => {
      if (!text.trim()) throw new ApiError("Type a text first.");
      return text;
    },
    render: renderClassification,
  },
  seq2seq: {
    name: "date normaliser",
    label: "Date, written any way",
    placeholder: "22 November 2026",
    examples: ["22 November 2026", "nov 22, 26", "Sunday 22/11/2026", "11.22.2026"],
    parse: (text) => {
      if (!text.trim()) throw new ApiError("Type a date first.");
      return text.trim();
    },
    render: renderSequence,
  },
  forecast: {
    name: "forecaster",
    label: "Series: numbers, oldest first, separated by commas or spaces",
    placeholder: "12, 14, 13, 17, 19, 18, 22",
    examples: seriesExamples,
    parse: parseSeries,
    render: renderForecast,
  },
};

const FALLBACK_TASK = {
  name: "model",
  label: "Instance (text, or JSON for anything else)",
  placeholder: '"some text" or [1, 2, 3]',
  examples: [],
  parse: (text) => {
    const trimmed = text.trim();
    if (!trimmed) throw new ApiError("Type an instance first.");
    if (/^[[{"]/.test(trimmed) || /^-?\d/.test(trimmed)) {
      try {
        return JSON.parse(trimmed);
      } catch {
        // not JSON: sent as text
      }
    }
    return text;
  },
  render: renderRaw,
};

const taskOf = (model) => TASKS[model?.task] || FALLBACK_TASK;

function parseSeries(text) {
  const parts = text
    .trim()
    .split(/[\s,;]+/)
    .filter(Boolean);
  if (!parts.length) throw new ApiError("Type or pick a series first.");
  return parts.map((part, i) => {
    const value = Number(part);
    if (!Number.isFinite(value)) {
      throw new ApiError(`Value ${i + 1} (“${part}”) is not a number.`);
    }
    return value;
  });
}

// ---------------------------------------------------------------- models list

async function loadModels() {
  clearTimeout(state.pollTimer);
  els.refresh.disabled = true;
  els.modelsStatus.textContent = "Loading the models…";
  try {
    const list = await api(API);
    const names = (list.models || []).map((m) => m.name);
    const details = await Promise.all(
      names.map((name) =>
        api(modelPath(name)).catch((error) => ({ name, task: null, loadError: error.message })),
      ),
    );
    state.models = new Map(details.map((d) => [d.name, d]));
    renderModels();
    fillModelSelect();
    const loading = details.some((d) => (d.status || []).some((s) => s.state === "loading"));
    if (loading) state.pollTimer = setTimeout(loadModels, 2000);
  } catch (error) {
    els.modelsStatus.textContent = "";
    els.modelsStatus.append(errorBox(`Could not list the models: ${error.message}`));
  } finally {
    els.refresh.disabled = false;
  }
}

/** The status entry of the version the API serves by default (or the newest one). */
function shownStatus(model) {
  const status = model.status || [];
  const version = model.default_version ?? model.manifest?.version;
  return status.find((s) => s.version === version) || status[status.length - 1] || null;
}

function providerName(provider) {
  return provider ? provider.replace(/ExecutionProvider$/, "") : "not loaded";
}

function architectureText(arch) {
  if (!arch || typeof arch !== "object") return null;
  const cell = String(arch.cell || "rnn").toUpperCase();
  const layers = arch.num_layers ?? arch.layers;
  const size = arch.hidden_size;
  const parts = [
    `${arch.bidirectional ? "Bi" : ""}${cell}${layers && size ? ` ${layers}×${size}` : ""}`,
  ];
  if (arch.attention) parts.push(`${arch.attention} attention`);
  return parts.join(", ");
}

/** Held-out metrics first (the splits a model was not selected on), then the rest. */
function metricsOf(manifest) {
  const metrics = manifest?.training?.metrics;
  if (!metrics || typeof metrics !== "object") return { heldOut: [], other: [] };
  const entries = Object.entries(metrics).filter(([, v]) => isNumber(v));
  const isSelection = ([key]) => /^(train|training|validation|val|valid)_/.test(key);
  const heldOut = entries.filter((e) => !isSelection(e));
  return { heldOut, other: entries.filter(isSelection) };
}

function metricName(key) {
  return key.replace(/_/g, " ");
}

function metricValue(key, value) {
  const asShare = /(accuracy|acc|f1|precision|recall|exact|match)/.test(key) && value <= 1;
  if (asShare && /change|diff|delta/.test(key))
    return `${value >= 0 ? "+" : ""}${percent(value, 2)}`;
  return asShare ? percent(value) : formatNumber(value);
}

function factsList(rows) {
  return el(
    "dl",
    { class: "facts" },
    rows
      .filter(([, value]) => value !== null && value !== undefined && value !== "")
      .map(([term, value, title]) =>
        el("div", {}, el("dt", { text: term }), el("dd", { title }, value)),
      ),
  );
}

function renderModels() {
  els.models.replaceChildren();
  const models = [...state.models.values()];
  els.modelsStatus.textContent = models.length
    ? `${models.length} model${models.length === 1 ? "" : "s"} on this server.`
    : "No models on this server yet.";
  for (const model of models) els.models.append(modelCard(model));
}

function modelCard(model) {
  const manifest = model.manifest || {};
  const status = shownStatus(model);
  const stateName = model.loadError
    ? "unknown"
    : model.ready
      ? "ready"
      : status?.state || "not ready";
  const { heldOut, other } = metricsOf(manifest);
  const training = manifest.training || {};
  const dataset = training.dataset || null;
  const heldOutCount = training.examples?.test ?? training.examples?.dev;
  const quantized = manifest.export?.quantized;

  const headingId = `model-${model.name}`;
  const card = el(
    "li",
    { class: "model-card", "data-model": model.name, "aria-labelledby": headingId },
    el(
      "div",
      { class: "card-head" },
      el("h3", { id: headingId, text: model.name }),
      el("span", { class: `badge state-${stateName.replace(/\s+/g, "-")}`, text: stateName }),
      quantized ? el("span", { class: "badge", text: String(quantized) }) : null,
    ),
    manifest.description ? el("p", { class: "desc", text: manifest.description }) : null,
    factsList([
      ["Version", model.default_version ?? status?.version ?? "none ready"],
      ["Task", model.task ?? manifest.task ?? "unknown"],
      ["Provider", providerName(status?.provider), status?.provider || undefined],
      ["Network", architectureText(manifest.architecture)],
    ]),
    heldOut.length
      ? el(
          "div",
          { class: "metrics" },
          el("p", {
            class: "metrics-title",
            text: `Held out${dataset ? `, ${dataset}` : ""}${
              isNumber(heldOutCount) ? ` (${formatNumber(heldOutCount)} examples)` : ""
            }`,
          }),
          factsList(heldOut.map(([k, v]) => [metricName(k), metricValue(k, v)])),
        )
      : null,
    status?.error || model.loadError
      ? errorBox(`Failed to load: ${status?.error || model.loadError}`)
      : null,
    details(model, other),
    el("button", {
      type: "button",
      class: "try-button",
      "data-model": model.name,
      disabled: !model.ready,
      text: `Try ${model.name}`,
    }),
  );
  if (state.selected === model.name) card.setAttribute("aria-current", "true");
  return card;
}

function details(model, selectionMetrics) {
  const manifest = model.manifest;
  if (!manifest) return null;
  const training = manifest.training || {};
  const exp = manifest.export || {};
  const examples =
    training.examples && typeof training.examples === "object"
      ? Object.entries(training.examples)
          .map(([k, v]) => `${k} ${formatNumber(v)}`)
          .join(", ")
      : null;
  const rows = [
    ...selectionMetrics.map(([k, v]) => [metricName(k), metricValue(k, v)]),
    ["Examples", examples],
    ["Epochs", training.epochs],
    ["Seed", training.seed],
    ["Data source", training.source],
    ["ONNX opset", exp.opset],
    [
      "Parity with PyTorch",
      isNumber(exp.parity_max_abs_diff) ? `max |Δ| ${formatNumber(exp.parity_max_abs_diff)}` : null,
    ],
    ["Max length", maxLength(manifest.preprocessing)],
    ["Window, horizon", seriesSizes(manifest.preprocessing)],
    ["Versions ready", (model.versions || []).join(", ") || "none"],
  ];
  return el("details", {}, el("summary", { text: "More about this model" }), factsList(rows));
}

function maxLength(pre) {
  if (!pre) return null;
  if (isNumber(pre.max_tokens)) return `${formatNumber(pre.max_tokens)} tokens`;
  if (isNumber(pre.max_input_chars)) return `${formatNumber(pre.max_input_chars)} characters`;
  if (isNumber(pre.max_values)) return `${formatNumber(pre.max_values)} values`;
  return null;
}

function seriesSizes(pre) {
  return pre && isNumber(pre.window) && isNumber(pre.horizon)
    ? `${pre.window} values in, ${pre.horizon} out`
    : null;
}

function fillModelSelect() {
  const previous = state.selected || decodeURIComponent(location.hash.slice(1));
  els.model.replaceChildren();
  const usable = [...state.models.values()].filter((m) => m.ready);
  for (const model of state.models.values()) {
    els.model.append(
      el("option", {
        value: model.name,
        disabled: !model.ready,
        text: `${model.name} (${model.task || "unknown task"}${model.ready ? "" : ", not ready"})`,
      }),
    );
  }
  const chosen = usable.find((m) => m.name === previous) || usable[0];
  const enabled = Boolean(chosen);
  els.model.disabled = !state.models.size;
  els.instance.disabled = !enabled;
  els.submit.disabled = !enabled;
  if (!state.models.size) els.model.append(el("option", { value: "", text: "No models" }));
  selectModel(chosen ? chosen.name : null, { keepResult: chosen?.name === state.selected });
}

function selectModel(name, { keepResult = false } = {}) {
  const before = state.models.get(state.selected);
  state.selected = name;
  const model = state.models.get(name);
  if (name) els.model.value = name;
  for (const card of els.models.children) {
    if (card.dataset.model === name) card.setAttribute("aria-current", "true");
    else card.removeAttribute("aria-current");
  }
  const task = taskOf(model);
  els.instanceLabel.textContent = task.label;
  els.instance.placeholder = task.placeholder;
  els.instance.rows = model?.task === "forecast" ? 4 : 3;
  els.modelSummary.textContent = model
    ? `${model.name}, version ${model.default_version}: a ${task.name}` +
      (model.manifest?.description ? ` (${model.manifest.description})` : "") +
      "."
    : "";
  if (before && before.task !== model?.task) els.instance.value = "";
  renderExamples(typeof task.examples === "function" ? task.examples(model) : task.examples);
  if (!keepResult) els.result.replaceChildren();
  if (name && location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
}

function renderExamples(examples) {
  els.exampleButtons.replaceChildren();
  els.examples.hidden = !examples.length;
  for (const example of examples) {
    const { name, value } =
      typeof example === "string" ? { name: example, value: example } : example;
    els.exampleButtons.append(
      el("button", { type: "button", class: "example", "data-value": value, text: name }),
    );
  }
}

// ---------------------------------------------------------------- predicting

async function predict() {
  const model = state.models.get(state.selected);
  if (!model) return;
  const task = taskOf(model);
  state.request?.abort();
  let instance;
  try {
    instance = task.parse(els.instance.value);
  } catch (error) {
    els.result.replaceChildren(errorBox(error.message));
    return;
  }
  const controller = new AbortController();
  state.request = controller;
  els.pending.hidden = false;
  els.result.setAttribute("aria-busy", "true");
  const started = performance.now();
  try {
    const body = await api(`${modelPath(model.name)}:predict`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ instances: [instance], parameters: { attention: true } }),
      signal: controller.signal,
    });
    const ms = performance.now() - started;
    const prediction = body.predictions?.[0];
    if (!prediction) throw new ApiError("The answer held no prediction.");
    const view = el("article", { class: "prediction", "aria-label": "Prediction" });
    try {
      task.render(view, prediction, instance, model);
    } catch (error) {
      // A shape this page does not know: still show what came back.
      view.replaceChildren(
        errorBox(`Could not draw this prediction (${error.message}); here it is as JSON.`),
      );
      renderRaw(view, prediction);
    }
    view.append(
      el("p", {
        class: "meta",
        text: `${body.model_name} version ${body.model_version} answered in ${Math.round(ms)} ms.`,
      }),
    );
    els.result.replaceChildren(view);
  } catch (error) {
    if (error.name === "AbortError") return;
    els.result.replaceChildren(errorBox(error.message));
  } finally {
    if (state.request === controller) {
      state.request = null;
      els.pending.hidden = true;
      els.result.setAttribute("aria-busy", "false");
    }
  }
}

// ---------------------------------------------------------------- renderers

function renderClassification(view, prediction) {
  const probabilities = Object.entries(prediction.probabilities || {}).filter(([, p]) =>
    isNumber(p),
  );
  const top = prediction.probabilities?.[prediction.label];
  view.append(
    el(
      "p",
      { class: "answer" },
      el("span", { class: "answer-label", text: "Label " }),
      el("strong", { class: "label", "data-label": prediction.label, text: prediction.label }),
      isNumber(top) ? el("span", { class: "confidence", text: ` ${probability(top)}` }) : null,
    ),
  );
  if (prediction.truncated) {
    view.append(
      el("p", { class: "note", text: "The text was cut to the model's maximum length." }),
    );
  }

  view.append(el("h3", { text: "Probabilities" }));
  const bars = el("ul", { class: "bars" });
  for (const [label, p] of probabilities.sort((a, b) => b[1] - a[1])) {
    bars.append(
      el(
        "li",
        {
          class: `bar${label === prediction.label ? " chosen" : ""}`,
          "data-label": label,
          "data-value": p,
        },
        el("span", { class: "bar-name", text: label }),
        el(
          "span",
          { class: "bar-track", "aria-hidden": "true" },
          el("span", { class: "bar-fill", vars: { "--p": String(Math.min(1, Math.max(0, p))) } }),
        ),
        el("span", { class: "bar-value", text: probability(p) }),
      ),
    );
  }
  view.append(bars);

  const attention = Array.isArray(prediction.attention) ? prediction.attention : [];
  if (!attention.length) return;
  view.append(el("h3", { text: "Attention over the tokens" }));
  const tokens = attention.map((entry) =>
    Array.isArray(entry) ? String(entry[0]) : String(entry),
  );
  const weights = attention.map(weightOf);
  view.append(tokenStrip(tokens, weights));
  const ranked = tokens
    .map((t, i) => [t, weights[i]])
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3);
  view.append(
    el("p", {
      class: "help",
      text:
        "Darker tokens weighed more in the answer. Most attention: " +
        ranked.map(([t, w]) => `“${t}” ${percent(w, 0)}`).join(", ") +
        ".",
    }),
  );
}

function tokenStrip(tokens, weights) {
  const shade = normalise(weights);
  return el(
    "p",
    { class: "tokens" },
    tokens.map((token, i) =>
      el("span", {
        class: `token${shade[i] > 0.55 ? " strong" : ""}`,
        "data-weight": weights[i],
        title: `attention ${percent(weights[i])}`,
        vars: { "--w": shade[i].toFixed(3) },
        text: token,
      }),
    ),
  );
}

function renderSequence(view, prediction, instance) {
  const output = String(prediction.output ?? prediction.text ?? "");
  view.append(
    el(
      "p",
      { class: "answer" },
      el("span", { class: "answer-label", text: "Output " }),
      el("strong", { class: "output", text: output }),
    ),
  );
  const matrix = Array.isArray(prediction.attention) ? prediction.attention : [];
  if (!matrix.length) return;
  const outputs = Array.isArray(prediction.output_chars)
    ? prediction.output_chars.map(String)
    : [...output];
  // Rows are output characters; a row is a list of weights, or [output char, weights].
  const rows = matrix.map((row, i) => {
    if (Array.isArray(row) && row.length === 2 && Array.isArray(row[1])) {
      return { label: String(row[0]), weights: row[1].map(weightOf) };
    }
    const weights = Array.isArray(row) ? row.map(weightOf) : [];
    return { label: i < outputs.length ? outputs[i] : "end", weights };
  });
  // The server sends the characters it really read (after normalisation) and wrote.
  const inputs = Array.isArray(prediction.input_chars)
    ? prediction.input_chars.map(String)
    : [...String(instance)];
  const width = Math.max(...rows.map((r) => r.weights.length));
  const columns = Array.from({ length: width }, (_, j) => (j < inputs.length ? inputs[j] : "end"));

  view.append(el("h3", { text: "Alignment: output characters by input characters" }));
  const table = el(
    "table",
    { class: "heatmap" },
    el("caption", {
      class: "sr",
      text: "Attention of each output character (rows) over the input characters (columns)",
    }),
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        el("td", {}),
        columns.map((c) => el("th", { scope: "col", title: c, text: shownChar(c) })),
      ),
    ),
    el(
      "tbody",
      {},
      rows.map((row) => {
        const shade = normalise(row.weights);
        return el(
          "tr",
          {},
          el("th", { scope: "row", text: shownChar(row.label) }),
          columns.map((_, j) =>
            el(
              "td",
              {
                title: `${row.label} ← ${columns[j]}: ${percent(row.weights[j] ?? 0)}`,
                vars: { "--w": (shade[j] ?? 0).toFixed(3) },
              },
              el("span", { class: "sr", text: percent(row.weights[j] ?? 0, 0) }),
            ),
          ),
        );
      }),
    ),
  );
  view.append(
    el("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": "Heatmap" }, table),
    el("p", {
      class: "help",
      "aria-hidden": "true",
      text: "Each row is one output character; darker cells are the input characters it attended to.",
    }),
  );
}

function renderForecast(view, prediction, history) {
  const forecast = (Array.isArray(prediction.forecast) ? prediction.forecast : [])
    .map(Number)
    .filter(Number.isFinite);
  const attention = historyWeights(prediction.attention, history.length);
  view.append(
    el(
      "p",
      { class: "answer" },
      el("span", { class: "answer-label", text: "Forecast " }),
      el("strong", { class: "output", text: forecast.map(formatNumber).join(", ") }),
    ),
  );
  view.append(el("h3", { text: "History, forecast and attention" }));
  // Drawn at the width it is shown at, so its text keeps its size on a phone.
  const width = Math.round(Math.min(720, Math.max(300, els.form.clientWidth || 640)));
  view.append(seriesChart(history, forecast, attention, width));
  view.append(
    el(
      "p",
      { class: "legend help" },
      el("span", { class: "key key-history" }),
      " history ",
      el("span", { class: "key key-forecast" }),
      " forecast ",
      el("span", { class: "key key-attention" }),
      " attention (darker: weighed more)",
    ),
  );
}

/** One weight per history value: from a list of weights (or [value, weight] pairs), or from
 * a matrix with one row per forecast step (averaged); at most as long as the history. */
function historyWeights(attention, length) {
  if (!Array.isArray(attention) || !attention.length) return [];
  const isMatrix = attention.every((row) => Array.isArray(row) && row.length > 2);
  let weights = attention.map(weightOf);
  if (isMatrix) {
    const width = Math.max(...attention.map((row) => row.length));
    weights = Array.from({ length: width }, (_, j) => {
      const column = attention.map((row) => row[j]).filter(isNumber);
      return column.length ? column.reduce((a, b) => a + b, 0) / attention.length : 0;
    });
  }
  return weights.slice(-length);
}

function seriesChart(history, forecast, attention, W = 640) {
  const H = Math.round(Math.max(180, W * 0.38));
  const pad = { left: 44, right: 12, top: 12, bottom: 24 };
  const n = history.length + forecast.length;
  const values = [...history, ...forecast].filter(isNumber);
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (lo === hi) [lo, hi] = [lo - 1, hi + 1];
  const margin = (hi - lo) * 0.08;
  lo -= margin;
  hi += margin;
  const step = (W - pad.left - pad.right) / Math.max(1, n - 1);
  const x = (i) => pad.left + i * step;
  const y = (v) => pad.top + ((hi - v) / (hi - lo)) * (H - pad.top - pad.bottom);
  const points = (list, offset) =>
    list.map((v, i) => `${x(i + offset).toFixed(1)},${y(v).toFixed(1)}`).join(" ");

  // The attention covers the history, or its last part when the model reads a window.
  const offset = Math.max(0, history.length - attention.length);
  const shade = normalise(attention);
  const top = attention.length ? attention.indexOf(Math.max(...attention)) + offset : -1;

  const title = svg("title", {});
  title.textContent = "History and forecast";
  const desc = svg("desc", {});
  desc.textContent =
    `${history.length} values of history and ${forecast.length} forecast. ` +
    (top >= 0
      ? `The model attended most to value ${top + 1} (${formatNumber(history[top])}).`
      : "");
  const chart = svg(
    "svg",
    {
      viewBox: `0 0 ${W} ${H}`,
      class: "chart",
      role: "img",
      "aria-labelledby": "chart-title chart-desc",
    },
    title,
    desc,
  );
  title.id = "chart-title";
  desc.id = "chart-desc";
  const bandWidth = Math.max(1, step);
  attention.forEach((_, i) => {
    chart.append(
      svg("rect", {
        class: "attention",
        x: (x(i + offset) - bandWidth / 2).toFixed(1),
        y: pad.top,
        width: bandWidth.toFixed(1),
        height: H - pad.top - pad.bottom,
        "fill-opacity": (0.08 + 0.6 * shade[i]).toFixed(3),
      }),
    );
  });
  for (const v of [lo + margin, hi - margin]) {
    chart.append(
      svg("line", { class: "grid", x1: pad.left, x2: W - pad.right, y1: y(v), y2: y(v) }),
    );
    const label = svg("text", {
      class: "axis",
      x: pad.left - 6,
      y: y(v) + 4,
      "text-anchor": "end",
    });
    label.textContent = formatNumber(Number(v.toPrecision(3)));
    chart.append(label);
  }
  if (forecast.length && history.length) {
    const now = x(history.length - 1);
    chart.append(svg("line", { class: "now", x1: now, x2: now, y1: pad.top, y2: H - pad.bottom }));
    const label = svg("text", { class: "axis", x: now + 4, y: H - 8 });
    label.textContent = "now";
    chart.append(label);
  }
  chart.append(svg("polyline", { class: "history", points: points(history, 0) }));
  if (forecast.length) {
    const joined = history.length ? [history[history.length - 1], ...forecast] : forecast;
    chart.append(
      svg("polyline", {
        class: "forecast",
        points: points(joined, history.length ? history.length - 1 : 0),
      }),
    );
  }
  return el("div", { class: "chart-box" }, chart);
}

function renderRaw(view, prediction) {
  view.append(el("h3", { text: "Prediction" }));
  view.append(el("pre", { class: "raw", text: JSON.stringify(prediction, null, 2) }));
}

// ---------------------------------------------------------------- events

els.form.addEventListener("submit", (event) => {
  event.preventDefault();
  predict();
});

els.instance.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    els.form.requestSubmit();
  }
});

els.model.addEventListener("change", () => selectModel(els.model.value));

els.models.addEventListener("click", (event) => {
  const button = event.target.closest("button.try-button");
  if (!button) return;
  selectModel(button.dataset.model);
  els.instance.focus();
  els.tryPanel.scrollIntoView({ block: "start", behavior: "smooth" });
});

els.exampleButtons.addEventListener("click", (event) => {
  const button = event.target.closest("button.example");
  if (!button) return;
  els.instance.value = button.dataset.value;
  els.form.requestSubmit();
});

els.refresh.addEventListener("click", loadModels);

loadModels();
