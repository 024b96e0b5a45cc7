// rnnserve's page: lists the models and lets a person try each one, showing the attention.
// Plain JavaScript, no framework, no build step. It uses the public V1 API:
//   GET /v1/models, GET /v1/models/{name}, POST /v1/models/{name}:predict,
// and V2's POST /v2/models/{name}/infer for a task that sends tensors (tensor.js).
// Each task is presented by its own module, ui/tasks/<task>.js, which the server finds in the
// task registry: how to read the input a person types, some examples, and how to draw a
// prediction. A task without one still works: the input is sent as typed (or as JSON) and
// the prediction is shown as JSON.

import { ApiError, el, errorBox, formatNumber, isNumber, percent } from "./page.js";

const API = "v1/models"; // relative: works at /, at /ui and behind a path prefix

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

// ---------------------------------------------------------------- the API
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

// Each task's presentation, loaded once: task name -> module (or FALLBACK_TASK).
const presentations = new Map();

async function loadPresentation(task) {
  if (!task || presentations.has(task)) return;
  try {
    presentations.set(task, (await import(`./tasks/${encodeURIComponent(task)}.js`)).default);
  } catch {
    presentations.set(task, FALLBACK_TASK);
  }
}

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

const taskOf = (model) => presentations.get(model?.task) || FALLBACK_TASK;

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
    await Promise.all(details.map((d) => loadPresentation(d.task)));
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

// Where a model's graphs came from, when not from `rnnserve train`.
const ORIGINS = { module: "a user's PyTorch module", onnx: "an ONNX graph made elsewhere" };

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
    manifest.title ? el("p", { class: "title", text: manifest.title }) : null,
    manifest.description ? el("p", { class: "desc", text: manifest.description }) : null,
    factsList([
      ["Version", model.default_version ?? status?.version ?? "none ready"],
      ["Task", model.task ?? manifest.task ?? "unknown"],
      ["Provider", providerName(status?.provider), status?.provider || undefined],
      ["Network", architectureText(manifest.architecture)],
      ["Made from", ORIGINS[manifest.origin]],
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
  // What the model is and examples to try: its manifest's words, else the task's plain ones.
  const manifest = model?.manifest || {};
  const own = Array.isArray(manifest.examples) ? manifest.examples.map(String) : [];
  els.instanceLabel.textContent = task.label;
  els.instance.placeholder = own[0] ?? task.placeholder;
  els.instance.rows = task.rows ?? 3;
  els.modelSummary.textContent = model
    ? `${model.name}, version ${model.default_version}: ${manifest.title || `a ${task.name}`}` +
      (manifest.description ? ` (${manifest.description})` : "") +
      "."
    : "";
  if (before && before.task !== model?.task) els.instance.value = "";
  const generic = typeof task.examples === "function" ? task.examples(model) : task.examples;
  renderExamples(own.length ? own : generic || []);
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

/** Whether a graph of the model returns attention (asking a model without it is a 400). */
function hasAttention(model) {
  const graphs = Object.values(model.manifest?.graphs || {});
  return graphs.some((graph) => (graph.outputs || []).some((o) => o.name === "attention"));
}

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
    // V1 by default; a task may send its own request (a tensor model: V2 as typed).
    const request = task.request?.(model, instance) || {
      path: `${modelPath(model.name)}:predict`,
      body: { instances: [instance], parameters: { attention: hasAttention(model) } },
      answer: (response) => response.predictions?.[0],
    };
    const body = await api(request.path, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(request.body),
      signal: controller.signal,
    });
    const ms = performance.now() - started;
    const prediction = request.answer(body);
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
