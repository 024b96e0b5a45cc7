"""A real server exporting its traces over OTLP (http/protobuf) to a real receiver: a small
HTTP server here that decodes each ExportTraceServiceRequest."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.conftest import DEFAULT_MODELS
from tests.live_server import free_port, live_server
from tests.waiting import wait_for

HTTP_TRACE = "0af7651916cd43dd8448eb211c80319c"
GRPC_TRACE = "5b8efff798038103d269b633813fc60c"
CALLER_SPAN = "b7ad6b7169203331"
STAGES = {"parse", "queue", "batch", "response"}


class Receiver(ThreadingHTTPServer):
    """Collects every span it is sent, by trace id; answers as an OTLP collector does."""

    def __init__(self) -> None:
        self.spans: dict[str, list] = {}
        self.resources: list[dict] = []
        self.paths: set[str] = set()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), Handler)


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        export = ExportTraceServiceRequest.FromString(body)
        with self.server.lock:
            self.server.paths.add(self.path)
            for resource_spans in export.resource_spans:
                self.server.resources.append(
                    {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                )
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        self.server.spans.setdefault(span.trace_id.hex(), []).append(span)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def receiver():
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def spans_arrived(receiver: Receiver, trace_id: str, names: set[str]) -> dict:
    def spans() -> dict:
        with receiver.lock:
            return {s.name: s for s in receiver.spans.get(trace_id, [])}

    try:
        wait_for(lambda: names <= set(spans()), f"spans {sorted(names)}", timeout=20)
    except TimeoutError:
        raise AssertionError(f"only {sorted(spans())} arrived for trace {trace_id}") from None
    return spans()


def test_http_and_grpc_traces_reach_an_otlp_receiver(receiver, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{receiver.server_port}")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "rnnserve-under-test")
    grpc_port = free_port()
    with live_server(DEFAULT_MODELS, grpc_port=grpc_port) as url:
        answer = httpx.post(
            f"{url}/v2/models/sst2-lstm/infer",
            json={
                "inputs": [
                    {"name": "tokens", "shape": [1, 3], "datatype": "INT64", "data": [[5, 6, 7]]}
                ]
            },
            headers={"traceparent": f"00-{HTTP_TRACE}-{CALLER_SPAN}-01"},
        )
        assert answer.status_code == 200
        text = triton.InferInput("text", [1], "BYTES")
        text.set_data_from_numpy(np.array(["a film to remember"], dtype=object))
        with triton.InferenceServerClient(f"127.0.0.1:{grpc_port}") as client:
            client.infer(
                "sst2-lstm", [text], headers={"traceparent": f"00-{GRPC_TRACE}-{CALLER_SPAN}-01"}
            )
        over_http = spans_arrived(receiver, HTTP_TRACE, STAGES | {"POST /v2/models/{name}/infer"})
        over_grpc = spans_arrived(
            receiver, GRPC_TRACE, STAGES | {"inference.GRPCInferenceService/ModelInfer"}
        )
    assert receiver.paths == {"/v1/traces"}
    assert {"service.name": "rnnserve-under-test"}.items() <= receiver.resources[0].items()
    for spans, root in (
        (over_http, "POST /v2/models/{name}/infer"),
        (over_grpc, "inference.GRPCInferenceService/ModelInfer"),
    ):
        assert spans[root].parent_span_id.hex() == CALLER_SPAN
        for stage in STAGES:
            assert spans[stage].parent_span_id == spans[root].span_id
        attributes = {a.key: a.value for a in spans["batch"].attributes}
        assert attributes["rnnserve.model"].string_value == "sst2-lstm"
        assert attributes["rnnserve.batch_size"].int_value == 1
