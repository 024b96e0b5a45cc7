"""OpenTelemetry traces: a caller's `traceparent` continued over HTTP and gRPC, one span per
stage, the trace id in the access log, and no OpenTelemetry SDK loaded when it is off."""

import logging
import subprocess
import sys

import numpy as np
import pytest
import tritonclient.grpc as triton
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service import tracing
from service.app import create_app
from service.settings import Settings
from tests.conftest import ROOT, wait_ready
from tests.live_server import free_port

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
STAGES = ["parse", "queue", "batch", "response"]


@pytest.fixture(scope="module")
def traced(tiny_repository):
    """An app (HTTP and gRPC) tracing into memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    grpc_port = free_port()
    settings = Settings(model_repository=tiny_repository, providers="cpu", grpc_port=grpc_port)
    try:
        with TestClient(create_app(settings)) as client:
            wait_ready(client)
            client.grpc = f"127.0.0.1:{grpc_port}"
            yield client, exporter
    finally:
        tracing.install(None)


def spans_of(exporter, trace_id: str) -> dict:
    return {
        s.name: s for s in exporter.get_finished_spans() if f"{s.context.trace_id:032x}" == trace_id
    }


def assert_one_trace(spans: dict, root_name: str) -> None:
    root = spans[root_name]
    assert root.parent.span_id == int(PARENT_ID, 16)  # continues the caller's span
    for stage in STAGES:
        assert spans[stage].parent.span_id == root.context.span_id, stage
    queue, batch = spans["queue"], spans["batch"]
    assert root.start_time <= spans["parse"].end_time <= queue.start_time
    assert queue.end_time == batch.start_time <= batch.end_time <= spans["response"].start_time
    assert batch.end_time <= root.end_time
    assert batch.attributes["rnnserve.model"] == "tiny-lstm"
    assert batch.attributes["rnnserve.model_version"] == "1"
    assert batch.attributes["rnnserve.batch_size"] >= 2


def test_http_v2_request_continues_the_callers_trace(traced, caplog):
    client, exporter = traced
    body = {
        "inputs": [
            {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a great film", "dull"]}
        ]
    }
    with caplog.at_level(logging.INFO, logger="rnnserve.access"):
        response = client.post(
            "/v2/models/tiny-lstm/infer",
            json=body,
            headers={"traceparent": TRACEPARENT, "x-request-id": "req-7"},
        )
    assert response.status_code == 200
    spans = spans_of(exporter, TRACE_ID)
    assert_one_trace(spans, "POST /v2/models/{name}/infer")
    assert spans["POST /v2/models/{name}/infer"].attributes["http.response.status_code"] == 200
    (line,) = [r.fields for r in caplog.records if r.fields.get("request_id") == "req-7"]
    assert line["trace_id"] == TRACE_ID


def test_v1_request_without_traceparent_starts_a_trace(traced, caplog):
    client, exporter = traced
    exporter.clear()
    with caplog.at_level(logging.INFO, logger="rnnserve.access"):
        response = client.post(
            "/v1/models/tiny-lstm:predict", json={"instances": ["great", "awful film"]}
        )
    assert response.status_code == 200
    (root,) = [s for s in exporter.get_finished_spans() if s.parent is None]
    assert root.name == "POST /v1/models/{name}:predict"
    trace_id = f"{root.context.trace_id:032x}"
    assert set(STAGES) <= set(spans_of(exporter, trace_id))
    request_id = response.headers["x-request-id"]
    (line,) = [r.fields for r in caplog.records if r.fields.get("request_id") == request_id]
    assert line["trace_id"] == trace_id


def test_grpc_call_continues_the_callers_trace(traced, caplog):
    client, exporter = traced
    text = triton.InferInput("text", [2], "BYTES")
    text.set_data_from_numpy(np.array(["brilliant", "tedious film"], dtype=object))
    with (
        caplog.at_level(logging.INFO, logger="rnnserve.access"),
        triton.InferenceServerClient(client.grpc) as grpc_client,
    ):
        grpc_client.infer(
            "tiny-lstm", [text], headers={"traceparent": TRACEPARENT, "x-request-id": "rpc-3"}
        )
    root_name = "inference.GRPCInferenceService/ModelInfer"
    spans = spans_of(exporter, TRACE_ID)
    assert_one_trace(spans, root_name)
    assert spans[root_name].attributes["rpc.grpc.status_code"] == 0
    (line,) = [r.fields for r in caplog.records if r.fields.get("request_id") == "rpc-3"]
    assert (line["trace_id"], line["path"], line["status"], line["model"]) == (
        TRACE_ID,
        "/inference.GRPCInferenceService/ModelInfer",
        "OK",
        "tiny-lstm",
    )


NO_TRACING = """
import logging, sys
from fastapi.testclient import TestClient
from service.app import create_app
from service.settings import Settings

records = []
logging.getLogger("rnnserve.access").addHandler(logging.Handler())
logging.getLogger("rnnserve.access").handlers[0].emit = records.append
logging.getLogger("rnnserve.access").setLevel(logging.INFO)
app = create_app(Settings(model_repository=sys.argv[1], providers="cpu", grpc_port=0))
with TestClient(app) as client:
    while client.get("/v2/health/ready").status_code != 200:
        pass
    answer = client.post("/v1/models/tiny-lstm:predict", json={"instances": ["great"]},
                         headers={"traceparent": sys.argv[2]})
    assert answer.status_code == 200, answer.text
# FastAPI itself imports the OpenTelemetry API when it is installed; the SDK and the
# exporters are ours to load, and only with an endpoint.
loaded = sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exp")))
assert not loaded, loaded
(line,) = [r.fields for r in records if r.fields.get("path", "").startswith("/v1/")]
print(line["trace_id"])
"""


def test_without_an_endpoint_no_sdk_is_loaded_and_the_callers_trace_id_is_logged(
    tiny_repository,
):
    env = {"PATH": "/usr/bin:/bin", "RNNSERVE_GRPC_PORT": "0"}
    result = subprocess.run(
        [sys.executable, "-c", NO_TRACING, str(tiny_repository), TRACEPARENT],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == TRACE_ID
