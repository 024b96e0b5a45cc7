// How the page presents a forecaster: a series in, the forecast drawn after it with the
// attention over the history.

import { ApiError, el, formatNumber, isNumber, normalise, svg, weightOf } from "../page.js";

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

export default {
  name: "forecaster",
  label: "Series: numbers, oldest first, separated by commas or spaces",
  placeholder: "12, 14, 13, 17, 19, 18, 22",
  rows: 4,
  examples: seriesExamples,
  parse: parseSeries,
  render: renderForecast,
};

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
  const width = Math.round(Math.min(720, Math.max(300, document.getElementById("try-form")?.clientWidth || 640)));
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
