// How the page presents a sequence-to-sequence model: the output text and the alignment of
// output to input characters (or tokens). Generic wording: what a model does, and examples to
// try, come from its manifest (title, examples), shown by app.js.

import { ApiError, el, normalise, percent, shownChar, weightOf } from "../page.js";

export default {
  name: "sequence-to-sequence model",
  label: "Text in",
  placeholder: "Type a text",
  examples: [],
  parse: (text) => {
    if (!text.trim()) throw new ApiError("Type a text first.");
    return text.trim();
  },
  render: renderSequence,
};

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
  const tokens = Array.isArray(prediction.output_tokens);
  const unit = tokens ? "tokens" : "characters";
  const outputs = (tokens ? prediction.output_tokens : prediction.output_chars)?.map(String) ?? [
    ...output,
  ];
  // Rows are output characters; a row is a list of weights, or [output char, weights].
  const rows = matrix.map((row, i) => {
    if (Array.isArray(row) && row.length === 2 && Array.isArray(row[1])) {
      return { label: String(row[0]), weights: row[1].map(weightOf) };
    }
    const weights = Array.isArray(row) ? row.map(weightOf) : [];
    return { label: i < outputs.length ? outputs[i] : "end", weights };
  });
  // The server sends the characters it really read (after normalisation) and wrote.
  const inputs = (tokens ? prediction.input_tokens : prediction.input_chars)?.map(String) ?? [
    ...String(instance),
  ];
  const width = Math.max(...rows.map((r) => r.weights.length));
  const columns = Array.from({ length: width }, (_, j) => (j < inputs.length ? inputs[j] : "end"));

  view.append(el("h3", { text: `Alignment: output ${unit} by input ${unit}` }));
  const table = el(
    "table",
    { class: "heatmap" },
    el("caption", {
      class: "sr",
      text: `Attention of each output ${unit.slice(0, -1)} (rows) over the input ${unit} (columns)`,
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
      text: `Each row is one output ${unit.slice(0, -1)}; darker cells are the input ${unit} it attended to.`,
    }),
  );
}
