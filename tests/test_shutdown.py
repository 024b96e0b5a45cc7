"""Graceful shutdown of a real server: SIGTERM under load loses no accepted request, on
either wire, and both wires drain together.

The server gets a backlog of several seconds of work (many HTTP requests and gRPC calls in
flight, one sequence per session run), then SIGTERM once every one is inside it (queued or
running, read off /metrics). Every one of them must get its own answer (200, or OK); HTTP
readiness must stop being 200 and gRPC health stop being SERVING while the backlog drains,
gRPC's while HTTP requests are still in flight (not after the HTTP drain); the process must
exit by itself with status 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.rpc import inference_pb2 as pb
from service.rpc.methods import Stub
from tests.conftest import DEFAULT_MODELS
from tests.live_server import free_port, server_ready
from tests.test_real_server import expected_probabilities, random_texts
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

MODEL = "sst2-lstm"
PATH = f"/v1/models/{MODEL}:predict"
REQUESTS = 48
GRPC_CALLS = 8  # as many sequences as REQUESTS / 6 HTTP requests: in the same queue
INSTANCES = 32  # per request; more than one run takes, so whole requests can be counted
SETTINGS = {
    # One sequence per run on one thread: a backlog of seconds from a few dozen requests.
    "RNNSERVE_BATCHING__MAX_BATCH_SIZE": "1",
    "RNNSERVE_BATCHING__MAX_CONCURRENT_BATCHES": "1",
    "RNNSERVE_BATCHING__MAX_QUEUE_SIZE": str((REQUESTS + 8) * INSTANCES),
    "RNNSERVE_INTRA_OP_THREADS": "1",
    "RNNSERVE_REQUEST_TIMEOUT_S": "120",
}
RUNNING_AT_MOST = 1  # sequences in a running batch: max batch size x concurrent batches


@dataclass
class Shutdown:
    """What the client saw around one SIGTERM."""

    bodies: list[list[str]]
    grpc_bodies: list[list[str]]
    responses: list[httpx.Response | BaseException] = field(default_factory=list)
    grpc_responses: list[pb.ModelInferResponse | BaseException] = field(default_factory=list)
    # (seconds after SIGTERM, health status or error code name, HTTP requests in flight)
    grpc_health: list[tuple[float, str, int]] = field(default_factory=list)
    in_flight_at_sigterm: int = 0
    # (seconds after SIGTERM, status code or transport error name, requests still in flight)
    readiness: list[tuple[float, int | str, int]] = field(default_factory=list)
    late: list[int | str] = field(default_factory=list)  # requests sent after SIGTERM
    returncode: int | None = None
    exit_seconds: float = 0.0
    log: str = ""


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and f'model="{MODEL}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def sequences_held(client: httpx.AsyncClient) -> float:
    """Sequences the server has queued plus those it has run (not counting a running batch)."""
    text = (await client.get("/metrics")).text
    return metric(text, "rnnserve_queue_depth") + metric(text, "rnnserve_batch_size_sum")


def infer_request(texts: list[str]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name="text", datatype="BYTES", shape=[len(texts)])
    tensor.contents.bytes_contents.extend(t.encode() for t in texts)
    return request


async def health_status(health: health_pb2_grpc.HealthStub) -> str:
    try:
        answer = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    except grpc.aio.AioRpcError as error:
        return error.code().name


async def drive(process: subprocess.Popen, url: str, grpc_address: str, run: Shutdown) -> None:
    limits = httpx.Limits(max_connections=len(run.bodies) + 4, max_keepalive_connections=0)
    async with (
        httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client,
        grpc.aio.insecure_channel(grpc_address) as channel,
        grpc.aio.insecure_channel(grpc_address) as probe_channel,
    ):
        stub, health = Stub(channel), health_pb2_grpc.HealthStub(probe_channel)
        assert await health_status(health) == "SERVING"
        before = await sequences_held(client)
        tasks = [
            asyncio.create_task(client.post(PATH, json={"instances": body})) for body in run.bodies
        ]
        calls = [
            asyncio.ensure_future(stub.ModelInfer(infer_request(body), timeout=120))
            for body in run.grpc_bodies
        ]
        total = sum(len(body) for body in [*run.bodies, *run.grpc_bodies])
        deadline = time.monotonic() + 60
        # Every request is inside the server once this many sequences are queued or done.
        while await sequences_held(client) - before < total - RUNNING_AT_MOST:
            assert time.monotonic() < deadline, "the server did not take the requests in"
            await asyncio.sleep(0.005)
        run.in_flight_at_sigterm = sum(not t.done() for t in [*tasks, *calls])

        process.send_signal(signal.SIGTERM)
        sent = time.monotonic()

        async def late_request() -> None:  # a newcomer: served (200) or refused, no error status
            try:
                response = await client.post(PATH, json={"instances": ["late"]}, timeout=60)
                run.late.append(response.status_code)
            except httpx.TransportError as error:
                run.late.append(type(error).__name__)

        late: list[asyncio.Task] = []
        while process.poll() is None and time.monotonic() < sent + 90:
            in_flight = sum(not t.done() for t in tasks)
            if len(run.readiness) % 10 == 0:
                late.append(asyncio.create_task(late_request()))
            try:
                status: int | str = (await client.get("/v2/health/ready", timeout=2)).status_code
            except httpx.TransportError as error:
                status = type(error).__name__
            run.readiness.append((time.monotonic() - sent, status, in_flight))
            in_flight = sum(not t.done() for t in tasks)
            run.grpc_health.append(
                (time.monotonic() - sent, await health_status(health), in_flight)
            )
            await asyncio.sleep(0.02)
        run.exit_seconds = time.monotonic() - sent
        run.responses = await asyncio.gather(*tasks, return_exceptions=True)
        run.grpc_responses = await asyncio.gather(*calls, return_exceptions=True)
        await asyncio.gather(*late)


@pytest.fixture(scope="module")
def shutdown(tmp_path_factory) -> Shutdown:
    parts = [random_texts(REQUESTS * INSTANCES, seed=seed) for seed in range(4)]
    texts = [" ".join(words) for words in zip(*parts, strict=True)]  # 4 to 160 words
    run = Shutdown(
        bodies=[texts[i::REQUESTS] for i in range(REQUESTS)],
        grpc_bodies=[texts[i : i + INSTANCES] for i in range(0, GRPC_CALLS * INSTANCES, INSTANCES)],
    )
    port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "RNNSERVE_MODEL_REPOSITORY": str(DEFAULT_MODELS),
        "RNNSERVE_HOST": "127.0.0.1",
        "RNNSERVE_PORT": str(port),
        "RNNSERVE_GRPC_PORT": str(grpc_port),
        "RNNSERVE_PROVIDERS": "cpu",
        "RNNSERVE_LOG_LEVEL": "info",
        **SETTINGS,
    }
    log = tmp_path_factory.mktemp("shutdown") / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "service"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: server_ready(process, url), "the server to become ready", 120)
        asyncio.run(drive(process, url, f"127.0.0.1:{grpc_port}", run))
        run.returncode = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        run.log = log.read_text()
    return run


def test_sigterm_arrives_while_the_server_holds_many_requests(shutdown):
    assert shutdown.in_flight_at_sigterm >= REQUESTS // 2, shutdown.in_flight_at_sigterm


def test_every_accepted_request_gets_its_own_answer(shutdown):
    for body, response in zip(shutdown.bodies, shutdown.responses, strict=True):
        assert isinstance(response, httpx.Response), f"lost: {response!r}\n{shutdown.log}"
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        assert len(predictions) == len(body)
        for text, prediction in zip(body, predictions, strict=True):
            got = list(prediction["probabilities"].values())
            np.testing.assert_allclose(got, expected_probabilities(MODEL, text), atol=1e-5)


def test_readiness_stops_being_200_while_requests_drain(shutdown):
    statuses = [status for _, status, _ in shutdown.readiness]
    not_ready = [i for i, status in enumerate(statuses) if status != 200]
    assert not_ready, f"ready until the end: {shutdown.readiness}"
    first = not_ready[0]
    assert all(status != 200 for status in statuses[first:]), "ready again after not ready"
    seconds, _, in_flight = shutdown.readiness[first]
    assert seconds < 2.0, f"still ready {seconds:.2f} s after SIGTERM"
    assert in_flight > 0, "readiness only went down once nothing was left to drain"


def test_requests_sent_after_sigterm_are_served_or_refused(shutdown):
    assert shutdown.late
    assert all(outcome == 200 or isinstance(outcome, str) for outcome in shutdown.late), (
        shutdown.late
    )


def test_the_process_exits_0_after_draining(shutdown):
    assert shutdown.returncode == 0, f"exit status {shutdown.returncode}\n{shutdown.log[-2000:]}"


def test_every_grpc_call_in_flight_gets_its_own_answer(shutdown):
    for body, answer in zip(shutdown.grpc_bodies, shutdown.grpc_responses, strict=True):
        assert isinstance(answer, pb.ModelInferResponse), f"lost: {answer!r}\n{shutdown.log}"
        outputs = {o.name: o for o in answer.outputs}
        got = np.array(outputs["probabilities"].contents.fp32_contents).reshape(len(body), -1)
        for text, row in zip(body, got, strict=True):
            np.testing.assert_allclose(row, expected_probabilities(MODEL, text), atol=1e-5)


def test_grpc_health_stops_serving_while_http_still_drains(shutdown):
    """NOT_SERVING (or refused) at SIGTERM, beside the HTTP drain, never SERVING again."""
    statuses = [status for _, status, _ in shutdown.grpc_health]
    down = [i for i, status in enumerate(statuses) if status != "SERVING"]
    assert down, f"SERVING until the end: {shutdown.grpc_health}"
    first = down[0]
    assert all(status != "SERVING" for status in statuses[first:]), shutdown.grpc_health
    _, status, http_in_flight = shutdown.grpc_health[first]
    assert status in ("NOT_SERVING", "UNAVAILABLE"), status
    assert http_in_flight > 0, "gRPC went down only once the HTTP drain was over"
