// The page's shared helpers: building elements, formatting numbers and weights, errors.
// app.js and every task's presentation (tasks/<task>.js) import them.

// The SVG namespace, as the HTML parser assigns it (so no address is spelled out here).
const SVG = new DOMParser()
  .parseFromString("<svg></svg>", "text/html")
  .querySelector("svg").namespaceURI;

/** Create an element: el("p", {class: "x", text: "hi"}, child, ...). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  setAttrs(node, attrs);
  for (const child of children.flat()) if (child) node.append(child);
  return node;
}

export function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "vars") {
      for (const [name, v] of Object.entries(value)) node.style.setProperty(name, v);
    } else node.setAttribute(key, value === true ? "" : value);
  }
}

export const isNumber = (x) => typeof x === "number" && Number.isFinite(x);

export function percent(x, digits = 1) {
  return isNumber(x) ? `${(x * 100).toFixed(digits)} %` : "?";
}

/** A probability as a percentage that never rounds a near-certainty to 100 % or 0 %. */
export function probability(x) {
  if (isNumber(x) && x > 0.999 && x < 1) return ">99.9 %";
  if (isNumber(x) && x < 0.001 && x > 0) return "<0.1 %";
  return percent(x);
}

export function formatNumber(x) {
  if (!isNumber(x)) return String(x);
  if (Number.isInteger(x)) return x.toLocaleString("en");
  const abs = Math.abs(x);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return x.toExponential(2);
  return String(Number(x.toPrecision(4)));
}

/** A weight from an attention entry: a number, or a [token, weight] pair. */
export function weightOf(entry) {
  if (isNumber(entry)) return entry;
  if (Array.isArray(entry) && isNumber(entry[entry.length - 1])) return entry[entry.length - 1];
  if (entry && typeof entry === "object" && isNumber(entry.weight)) return entry.weight;
  return 0;
}

/** Weights scaled so the largest is 1: the most attended item is shaded fully. */
export function normalise(weights) {
  const max = Math.max(0, ...weights.filter(isNumber));
  return weights.map((w) => (max > 0 && isNumber(w) ? Math.max(0, w) / max : 0));
}

export const shownChar = (c) => (c === " " ? "␣" : c === "\t" ? "⇥" : c === "\n" ? "↵" : c);

export function errorBox(message) {
  return el("p", { class: "error", role: "alert", text: message });
}

export class ApiError extends Error {}
