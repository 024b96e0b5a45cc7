// How the page presents a text classifier: the label, its probabilities, the attention
// over the tokens. What a model is about, and examples to try, come from its manifest.

import { ApiError, el, isNumber, normalise, percent, probability, weightOf } from "../page.js";

export default {
  name: "text classifier",
  label: "Text to classify",
  placeholder: "Type a text",
  examples: [], // a model's own examples come from its manifest
  parse: (text) => {
    if (!text.trim()) throw new ApiError("Type a text first.");
    return text;
  },
  render: renderClassification,
};

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
