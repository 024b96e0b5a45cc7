"""Triton's sequences, sent by Triton's own clients (HTTP, gRPC ModelInfer, gRPC
ModelStreamInfer) to two real rnnserve processes sharing one real Redis: every step of a
sequence, wherever it lands, equals the same step through the sessions API and a stateless
predict of the whole history so far; and the errors a Triton client gets.

Forecasts are compared within rtol 1e-5 (float32 graphs run on batches of different shapes).
"""

from __future__ import annotations

import queue
from contextlib import ExitStack

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from tests.conftest import DEFAULT_MODELS, copy_version
from tests.live_server import free_port, live_server
from tests.scaleout import MISSING, have_redis, redis_server
from tests.service.test_forecast import co2_like

FORECASTER, STATELESS = "co2-gru", "sst2-gru"
CHUNKS = (5, 3, 8, 1)  # the steps of each sequence: how many new values each sends
RTOL = 1e-5
TTL_S = 600


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    if not have_redis():
        pytest.skip(f"needs {MISSING}")
    repository = tmp_path_factory.mktemp("repository")
    for name in (FORECASTER, STATELESS):
        copy_version(DEFAULT_MODELS / name / "1", repository, name, 1)
    with ExitStack() as stack:
        store = stack.enter_context(redis_server())
        urls = []
        for _ in range(2):
            port = free_port()
            url = stack.enter_context(
                live_server(
                    repository,
                    grpc_port=str(port),
                    session_store=store,
                    session_ttl_s=str(TTL_S),
                    batching__max_batch_delay_ms="3",
                )
            )
            url.grpc = f"127.0.0.1:{port}"
            urls.append(url)
        yield urls


@pytest.fixture(scope="module")
def clients(servers):
    """Each server's HTTP and gRPC Triton clients."""
    with ExitStack() as stack:
        yield [
            (
                triton_http.InferenceServerClient(url.removeprefix("http://")),
                stack.enter_context(triton_grpc.InferenceServerClient(url.grpc)),
            )
            for url in servers
        ]


def values_in(module, values: list[float]):
    tensor = module.InferInput("values", [1, len(values)], "FP32")
    tensor.set_data_from_numpy(np.array([values], np.float32))
    return tensor


def expected(servers, series: list[float]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each step's forecast through a session (alternating servers) and through a stateless
    predict of the whole history so far."""
    opened = httpx.post(f"{servers[0]}/v1/models/{FORECASTER}/sessions").json()
    by_session, by_predict, start = [], [], 0
    for i, n in enumerate(CHUNKS):
        step = httpx.post(
            f"{servers[i % 2]}/v1/models/{FORECASTER}/sessions/{opened['session_id']}:step",
            json={"values": series[start : start + n]},
        ).json()
        start += n
        by_session.append(np.array(step["forecast"]))
        predicted = httpx.post(
            f"{servers[0]}/v1/models/{FORECASTER}:predict", json={"instances": [series[:start]]}
        ).json()
        by_predict.append(np.array(predicted["predictions"][0]["forecast"]))
    return by_session, by_predict


def flags(i: int) -> dict[str, bool]:
    return {"sequence_start": i == 0, "sequence_end": i == len(CHUNKS) - 1}


def check(got: list[np.ndarray], servers, series: list[float]) -> None:
    by_session, by_predict = expected(servers, series)
    assert len(got) == len(CHUNKS)
    for forecast, session, predict in zip(got, by_session, by_predict, strict=True):
        assert forecast.shape == (1, 13)
        np.testing.assert_allclose(forecast[0], session, rtol=RTOL)
        np.testing.assert_allclose(forecast[0], predict, rtol=RTOL)


@pytest.mark.parametrize("sequence_id", [41, "http-sequence"], ids=["int", "string"])
def test_a_sequence_over_http_alternating_servers(servers, clients, sequence_id):
    series, got, start = co2_like(sum(CHUNKS), seed=1), [], 0
    for i, n in enumerate(CHUNKS):
        http, _ = clients[i % 2]
        result = http.infer(
            FORECASTER,
            [values_in(triton_http, series[start : start + n])],
            sequence_id=sequence_id,
            **flags(i),
        )
        start += n
        got.append(result.as_numpy("forecast"))
    check(got, servers, series)


@pytest.mark.parametrize("sequence_id", [42, "grpc-sequence"], ids=["int", "string"])
def test_a_sequence_over_grpc_model_infer_alternating_servers(servers, clients, sequence_id):
    series, got, start = co2_like(sum(CHUNKS), seed=2), [], 0
    for i, n in enumerate(CHUNKS):
        _, rpc = clients[(i + 1) % 2]
        result = rpc.infer(
            FORECASTER,
            [values_in(triton_grpc, series[start : start + n])],
            sequence_id=sequence_id,
            **flags(i),
        )
        start += n
        got.append(result.as_numpy("forecast"))
    check(got, servers, series)


def test_a_sequence_over_grpc_streams_on_both_servers(servers, clients):
    """ModelStreamInfer: the first steps on one server's stream, the rest on the other's; a
    failed request in a stream is answered in it, and the stream goes on."""
    series, got, start = co2_like(sum(CHUNKS), seed=3), [], 0
    answers: queue.Queue = queue.Queue()
    streams = [rpc for _, rpc in clients]
    for rpc in streams:
        rpc.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for i, n in enumerate(CHUNKS):
            rpc = streams[i // 2]
            if i == 1:  # a step of a sequence nobody started: an error, in the stream
                rpc.async_stream_infer(
                    FORECASTER, [values_in(triton_grpc, [1.0])], sequence_id="never-started"
                )
                result, error = answers.get(timeout=30)
                assert result is None and "must specify the START flag" in str(error)
            rpc.async_stream_infer(
                FORECASTER,
                [values_in(triton_grpc, series[start : start + n])],
                sequence_id=77,
                **flags(i),
            )
            start += n
            result, error = answers.get(timeout=30)
            assert error is None, error
            got.append(result.as_numpy("forecast"))
    finally:
        for rpc in streams:
            rpc.stop_stream()
    check(got, servers, series)


def test_sequence_errors_say_what_is_wrong(servers, clients):
    (http, rpc), url = clients[0], servers[0]
    one = [values_in(triton_http, [320.0])]
    with pytest.raises(InferenceServerException, match="sequence 9001 to model 'co2-gru' must "
                       "specify the START flag on the first request") as raised:  # fmt: skip
        http.infer(FORECASTER, one, sequence_id=9001)
    assert raised.value.status() == "400"
    with pytest.raises(InferenceServerException, match="must specify the START flag") as raised:
        rpc.infer(FORECASTER, [values_in(triton_grpc, [320.0])], sequence_id="nope")
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"

    # Ended twice: the second end is a step of a sequence that is not open, and says why.
    http.infer(FORECASTER, one, sequence_id=9002, sequence_start=True, sequence_end=True)
    with pytest.raises(InferenceServerException, match=r"\(it ended \(a request said sequence_"):
        http.infer(FORECASTER, one, sequence_id=9002, sequence_end=True)

    # A start for an open id restarts it: its answer is a fresh sequence's.
    series = co2_like(6, seed=4)
    first = http.infer(
        FORECASTER,
        [values_in(triton_http, series)],
        sequence_id=9003,
        sequence_start=True,
        parameters={"attention": True},  # the task's own parameter, as a session step takes it
    )
    weights = first.as_numpy("attention")
    assert weights.shape == (1, 6) and abs(weights.sum() - 1) < 1e-4  # over the 6 values seen
    again = http.infer(
        FORECASTER, [values_in(triton_http, series[:2])], sequence_id=9003, sequence_start=True
    )
    fresh = httpx.post(f"{url}/v1/models/{FORECASTER}:predict", json={"instances": [series[:2]]})
    np.testing.assert_allclose(
        again.as_numpy("forecast")[0], fresh.json()["predictions"][0]["forecast"], rtol=RTOL
    )
    assert again.as_numpy("attention").shape == (1, 0)  # not asked: an empty row

    # Ids are per model: the same id on the stateless model is refused for what it is.
    text = triton_http.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array(["a fine film"], dtype=object))
    with pytest.raises(InferenceServerException, match="does not keep sequences: it is stateless"):
        http.infer(STATELESS, [text], sequence_id=9003, sequence_start=True)

    # Parameters of the wrong type, as a client not written with tritonclient sends them.
    infer = f"{url}/v2/models/{FORECASTER}/infer"
    tensor = {"name": "values", "datatype": "FP32", "shape": [1, 1], "data": [320.0]}
    for parameters, where in (
        ({"sequence_id": 1.5, "sequence_start": True}, "sequence_id must be an unsigned"),
        ({"sequence_id": -3, "sequence_start": True}, "integer ids are 1..2**64-1"),
        ({"sequence_id": 5, "sequence_start": "yes"}, "sequence_start must be true or false"),
        ({"sequence_end": True}, "sequence_id must be an unsigned integer or a string"),
    ):
        response = httpx.post(infer, json={"inputs": [tensor], "parameters": parameters})
        assert response.status_code == 400, response.text
        assert where in response.json()["error"]
    two_rows = {**tensor, "shape": [2, 1], "data": [320.0, 321.0]}
    response = httpx.post(
        infer,
        json={"inputs": [two_rows], "parameters": {"sequence_id": 5, "sequence_start": True}},
    )
    assert response.status_code == 400
    assert "must be one row of values" in response.json()["error"]


def test_a_stateful_model_is_configured_for_sequences(clients):
    http, rpc = clients[0]
    config = http.get_model_config(FORECASTER)
    assert "dynamic_batching" not in config  # Triton's scheduling is one or the other
    batching = config["sequence_batching"]
    assert batching["max_sequence_idle_microseconds"] == TTL_S * 1_000_000
    assert batching["oldest"]["max_queue_delay_microseconds"] == 3000
    over_grpc = rpc.get_model_config(FORECASTER, as_json=True)["config"]
    assert int(over_grpc["sequence_batching"]["max_sequence_idle_microseconds"]) == TTL_S * 10**6
    assert "sequence_batching" not in http.get_model_config(STATELESS)
