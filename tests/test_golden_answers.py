"""A fixed request set over the committed default models: every answer equals the one recorded
before the task layers were reorganised (tests/data/golden_answers.json): the same status, the
same structure, the same labels, texts and error messages, and floats within a tolerance.

Floats are not compared byte for byte: onnxruntime's kernels differ between CPUs (AVX2,
AVX-512, VNNI) and builds, in the order they sum and in how they round. An fp32 graph moves
by a few units in the last place of its intermediate sums, so its answers agree to FP32_RTOL
(relative, 1e-4: the forecasts are ~320 ppm) or FP32_ATOL (1e-5, for probabilities near 0).
An int8 graph quantises each batch's activations dynamically, and a value on the edge of a
quantisation step rounds to the neighbouring step on another CPU: one step moves an output by
about 1e-3 (0.48820 read 0.48939 on an AMD EPYC), so INT8_ATOL is 2e-2, still far below the
gap between its labels' probabilities.

Regenerate only for an intended change of behaviour: `python -m tests.test_golden_answers`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import DEFAULT_MODELS, wait_ready

FP32_RTOL, FP32_ATOL = 1e-4, 1e-5
INT8_ATOL = 2e-2
GOLDEN = Path(__file__).resolve().parent / "data" / "golden_answers.json"
SERIES = [315.5 + 0.1 * i + (i % 7) * 0.3 for i in range(120)]
DATES = ["1 May 2026", "2026年5月1日", "31.12.1999", "mardi 3 mars 2020", "xx?!"]
TEXTS = [
    "a wonderful , moving film",
    "dull and tedious , a painful watch",
    "zzqx blorf flimflam great",  # unknown words read as <unk>
    "Didn't like it!",
]

# (method, path, JSON body or None); sessions reuse the id of the last one created.
REQUESTS: list[tuple[str, str, object]] = [
    ("GET", "/v1/models", None),
    ("GET", "/v2", None),
    *[("GET", f"/v1/models/{m}", None) for m in ("sst2-lstm", "dates", "co2-gru")],
    *[("GET", f"/v2/models/{m}", None) for m in ("sst2-lstm-int8", "dates", "co2-gru")],
    *[
        ("POST", f"/v1/models/{m}:predict", {"instances": TEXTS, "parameters": {"attention": True}})
        for m in ("sst2-lstm", "sst2-gru", "sst2-lstm-int8")
    ],
    ("POST", "/v1/models/sst2-lstm:predict", {"instances": ["great " * 300]}),
    (
        "POST",
        "/v1/models/sst2-lstm:predict",
        {"instances": ["great " * 300], "parameters": {"truncate": True}},
    ),
    ("POST", "/v1/models/sst2-lstm:predict", {"instances": [3]}),
    ("POST", "/v1/models/sst2-lstm:predict", {"instances": ["ok"], "parameters": {"nope": 1}}),
    ("POST", "/v1/models/nope:predict", {"instances": ["ok"]}),
    ("POST", "/v1/models/sst2-lstm/versions/1:predict", {"instances": TEXTS[:2]}),
    (
        "POST",
        "/v2/models/sst2-lstm/infer",
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": TEXTS[:2]}]},
    ),
    (
        "POST",
        "/v2/models/sst2-gru/infer",
        {
            "inputs": [
                {
                    "name": "tokens",
                    "datatype": "INT64",
                    "shape": [2, 3],
                    "data": [5, 6, 7, 8, 9, 10],
                }
            ]
        },
    ),
    ("POST", "/v1/models/dates:predict", {"instances": DATES}),
    (
        "POST",
        "/v1/models/dates:predict",
        {"instances": DATES[:2], "parameters": {"attention": True}},
    ),
    (
        "POST",
        "/v1/models/dates:predict",
        {"instances": DATES[:3], "parameters": {"beam_width": 3}},
    ),
    (
        "POST",
        "/v1/models/dates:predict",
        {"instances": DATES[:1], "parameters": {"max_output_chars": 4}},
    ),
    ("POST", "/v1/models/dates:predict", {"instances": [""]}),
    (
        "POST",
        "/v2/models/dates/infer",
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": DATES[:2]}]},
    ),
    ("POST", "/v1/models/co2-gru:predict", {"instances": [SERIES, SERIES[:20]]}),
    (
        "POST",
        "/v1/models/co2-gru:predict",
        {"instances": [SERIES[:50]], "parameters": {"attention": True}},
    ),
    ("POST", "/v1/models/co2-gru:predict", {"instances": [[1.0, "x"]]}),
    (
        "POST",
        "/v2/models/co2-gru/infer",
        {"inputs": [{"name": "values", "datatype": "FP32", "shape": [1, 30], "data": SERIES[:30]}]},
    ),
    ("POST", "/v1/models/co2-gru/sessions", None),
    ("POST", "/v1/models/co2-gru/sessions/{sid}:step", {"values": SERIES[:40]}),
    (
        "POST",
        "/v1/models/co2-gru/sessions/{sid}:step",
        {"values": SERIES[40:41], "parameters": {"attention": True}},
    ),
    ("POST", "/v1/models/co2-gru/sessions/{sid}:step", {"values": []}),
    ("POST", "/v1/models/dates/sessions", None),
    ("DELETE", "/v1/models/co2-gru/sessions/{sid}", None),
    ("POST", "/v1/models/co2-gru/sessions/{sid}:step", {"values": [1.0]}),
]


def answers() -> list[dict[str, object]]:
    """Each request's status and body (a session id, random, is replaced by a placeholder)."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    settings = Settings(model_repository=DEFAULT_MODELS, providers="cpu", intra_op_threads=1)
    out: list[dict[str, object]] = []
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        sid = ""
        for method, path, body in REQUESTS:
            response = client.request(method, path.format(sid=sid), json=body)
            if path.endswith("/sessions") and response.status_code == 201:
                sid = response.json()["session_id"]
            content = response.content.replace(sid.encode(), b"<id>") if sid else response.content
            out.append(
                {
                    "request": f"{method} {path}",
                    "status": response.status_code,
                    "body": content.decode(),
                }
            )
    return out


def differences(got: object, expected: object, atol: float, rtol: float, at: str = "") -> list[str]:
    """Where `got` differs from `expected`: keys, lengths, strings, ints and booleans exactly,
    floats within atol + rtol * |expected|."""
    if isinstance(expected, dict) and isinstance(got, dict):
        if list(got) != list(expected):
            return [f"{at or 'body'}: keys {list(got)} != {list(expected)}"]
        return [
            d for k in expected for d in differences(got[k], expected[k], atol, rtol, f"{at}.{k}")
        ]
    if isinstance(expected, list) and isinstance(got, list):
        if len(got) != len(expected):
            return [f"{at}: {len(got)} items != {len(expected)}"]
        return [
            d
            for i, (g, e) in enumerate(zip(got, expected, strict=True))
            for d in differences(g, e, atol, rtol, f"{at}[{i}]")
        ]
    if isinstance(expected, float) and isinstance(got, float | int) and not isinstance(got, bool):
        return (
            []
            if abs(got - expected) <= atol + rtol * abs(expected)
            else [f"{at}: {got} != {expected}"]
        )
    if type(got) is not type(expected) or got != expected:
        return [f"{at}: {got!r} != {expected!r}"]
    return []


def answer_differences(got: dict[str, object], expected: dict[str, object]) -> list[str]:
    """A recorded answer against a new one, within the tolerance of the graph that answered."""
    if got["status"] != expected["status"]:
        return [f"status {got['status']} != {expected['status']}"]
    if not expected["body"]:  # 204 No Content
        return [] if got["body"] == "" else [f"body {got['body']!r} != ''"]
    int8 = "int8" in str(expected["request"])
    atol, rtol = (INT8_ATOL, 0.0) if int8 else (FP32_ATOL, FP32_RTOL)
    return differences(json.loads(got["body"]), json.loads(expected["body"]), atol, rtol)


def test_a_float_within_tolerance_passes_and_a_label_or_a_key_does_not():
    """The comparison itself: what another CPU changes passes, what a bug changes does not."""
    request = "POST /v1/models/sst2-lstm-int8:predict"
    recorded = {"label": "positive", "attention": [["wonderful", 0.48820]], "forecast": [320.924]}
    other_cpu = {"label": "positive", "attention": [["wonderful", 0.48939]], "forecast": [320.925]}

    def compare(body: dict, path: str = request) -> list[str]:
        return answer_differences(
            {"request": path, "status": 200, "body": json.dumps(body)},
            {"request": path, "status": 200, "body": json.dumps(recorded)},
        )

    assert compare(other_cpu) == []
    assert compare({**other_cpu, "label": "negative"}) == [".label: 'negative' != 'positive'"]
    assert compare({**other_cpu, "attention": [["wonderfull", 0.48820]]}) != []
    assert compare({"label": "positive", "attention": []}) != []
    fp32 = request.replace("-int8", "")
    assert compare(other_cpu, fp32) == [".attention[0][1]: 0.48939 != 0.4882"]
    assert compare({**recorded, "forecast": [320.93]}, fp32) == []  # within 1e-4 relative
    assert compare({**recorded, "forecast": [321.0]}, fp32) != []


@pytest.mark.slow
def test_answers_equal_the_recorded_ones_within_tolerance():
    expected = json.loads(GOLDEN.read_text())
    got = answers()
    assert [a["request"] for a in got] == [e["request"] for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert answer_differences(g, e) == [], g["request"]


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(answers(), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {GOLDEN}", file=sys.stderr)
