"""A fixed request set over the committed default models: every answer equals, byte for byte,
the one recorded before the task layers were reorganised (tests/data/golden_answers.json).

Regenerate only for an intended change of behaviour: `python -m tests.test_golden_answers`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import DEFAULT_MODELS, wait_ready

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


@pytest.mark.slow
def test_answers_equal_the_recorded_ones_byte_for_byte():
    expected = json.loads(GOLDEN.read_text())
    got = answers()
    assert [a["request"] for a in got] == [e["request"] for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert (g["status"], g["body"]) == (e["status"], e["body"]), g["request"]


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(answers(), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {GOLDEN}", file=sys.stderr)
