// How the page presents any ONNX graph (task "tensor"): a V2 JSON request to edit, built from
// the graph's inputs, and each output tensor of the answer.
// V2_TYPES mirrors contract/dtypes.py (tests/test_dtypes.py checks that they agree).

import { ApiError, el, formatNumber, isNumber } from "../page.js";

const V2_TYPES = {
  float32: "FP32", float64: "FP64", float16: "FP16", int64: "INT64", int32: "INT32",
  int16: "INT16", int8: "INT8", uint64: "UINT64", uint32: "UINT32", uint16: "UINT16",
  uint8: "UINT8", bool: "BOOL", string: "BYTES",
}; // prettier-ignore

/** A request for one row of every input: dynamic axes 1, values 0 (false, "" by dtype). */
function exampleRequest(model) {
  const graph = model?.manifest?.graphs?.model;
  const inputs = (graph?.inputs || []).map((spec) => {
    const shape = spec.shape.map((d) => (isNumber(d) ? d : 1));
    const count = shape.reduce((a, b) => a * b, 1);
    const zero = spec.dtype === "string" ? "" : spec.dtype === "bool" ? false : 0;
    return { name: spec.name, datatype: V2_TYPES[spec.dtype], shape, data: Array(count).fill(zero) };
  });
  return JSON.stringify({ inputs }, null, 2);
}

function parseRequest(text) {
  let body;
  try {
    body = JSON.parse(text);
  } catch (error) {
    throw new ApiError(`The request is not JSON (${error.message}).`);
  }
  if (!body || !Array.isArray(body.inputs)) {
    throw new ApiError('A V2 request is an object with "inputs": [{name, datatype, shape, data}].');
  }
  return body;
}

export default {
  name: "tensor model (any ONNX graph)",
  label: "Open Inference Protocol (V2) request, JSON",
  placeholder: '{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0, 0, 0, 0]}]}',
  rows: 10,
  examples: (model) => [{ name: "One row of zeros", value: exampleRequest(model) }],
  parse: parseRequest,
  // Sent to POST /v2/models/{name}/infer as typed; the answer is V2's own.
  request: (model, body) => ({
    path: `v2/models/${encodeURIComponent(model.name)}/infer`,
    body,
    answer: (response) => response,
  }),
  render: renderOutputs,
};

function renderOutputs(view, response) {
  const outputs = Array.isArray(response.outputs) ? response.outputs : [];
  view.append(el("h3", { text: "Outputs" }));
  const list = el("dl", { class: "facts tensor-outputs" });
  for (const out of outputs) {
    const values = (out.data || []).map((v) => (isNumber(v) ? formatNumber(v) : String(v)));
    list.append(
      el(
        "div",
        { "data-output": out.name },
        el("dt", { text: `${out.name} ${out.datatype} [${(out.shape || []).join(", ")}]` }),
        el("dd", { class: "tensor-data", text: values.join(", ") }),
      ),
    );
  }
  view.append(list);
}
