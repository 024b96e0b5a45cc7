"""Fuzzing below the JSON schema, on a real server: the V2 binary tensor framing
(`Inference-Header-Content-Length`, `binary_data_size`, BYTES length prefixes) and the
streaming session routes. Every answer is a 2xx that says what it should, or a 4xx JSON error;
never a 5xx, and the server stays ready."""

import json
import os
import shutil
import struct
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.forecast_helpers import MAX_VALUES, tiny_forecast_repository
from tests.live_server import error_records, live_server

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    derandomize=not os.environ.get("RNNSERVE_FUZZ_RANDOM"),  # CI: the same cases every run
    suppress_health_check=list(HealthCheck),
)
DATATYPES = ["BYTES", "INT64", "INT32", "FP32", "FP64", "BOOL", "UINT8", "TEXT"]


@pytest.fixture(scope="module")
def server(tiny_repository, tmp_path_factory):
    repository = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(tiny_repository / "tiny-lstm", repository / "tiny-lstm")
    shutil.copytree(tiny_forecast_repository() / "tiny-forecast", repository / "tiny-forecast")
    log = repository.parent / "fuzz-server.log"
    with (
        live_server(repository, log_file=log, repository_poll_s="0") as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client
        assert client.get("/v2/health/ready").json() == {"ready": True}
    assert error_records(log) == []


def check(response: httpx.Response) -> dict:
    """No 5xx; a 4xx says what is wrong in JSON."""
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/json", response.text
        assert response.json()["error"], response.text
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    return {}


def length_prefixed(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


@st.composite
def binary_requests(draw) -> tuple[bytes, dict[str, str]]:
    """A V2 request with binary tensors: framed right, or wrong in one or several ways."""
    texts = draw(st.lists(st.text(max_size=12), min_size=0, max_size=4))
    raw = length_prefixed([t.encode() for t in texts])
    if draw(st.booleans()):  # damage the BYTES framing
        raw = draw(
            st.one_of(
                st.binary(max_size=64),
                st.just(raw[: draw(st.integers(0, max(len(raw) - 1, 0)))]),
                st.just(struct.pack("<I", draw(st.integers(0, 2**32 - 1))) + raw),
            )
        )
    declared = draw(st.one_of(st.just(len(raw)), st.integers(-5, 4096), st.text(max_size=4)))
    tensor = {
        "name": draw(st.sampled_from(["text", "tokens", "lengths", "other"])),
        "datatype": draw(st.sampled_from(DATATYPES)),
        "shape": draw(st.one_of(st.just([len(texts)]), st.lists(st.integers(-2, 5), max_size=3))),
        "parameters": {"binary_data_size": declared},
    }
    header = {"inputs": [tensor]}
    if draw(st.booleans()):
        header["outputs"] = [{"name": "label", "parameters": {"binary_data": draw(st.booleans())}}]
    head = json.dumps(header).encode()
    length = draw(
        st.one_of(
            st.just(str(len(head))),
            st.integers(-3, len(head) + len(raw) + 8).map(str),
            st.text(max_size=5),
        )
    )
    return head + raw, {"Inference-Header-Content-Length": length}


@FUZZ
@given(request=binary_requests())
def test_binary_framing_never_gets_a_server_error(server, request):
    body, headers = request
    try:
        response = server.post("/v2/models/tiny-lstm/infer", content=body, headers=headers)
    except (httpx.LocalProtocolError, UnicodeEncodeError):
        return  # a header value httpx itself refuses to send (a control character, not ASCII)
    check(response)


@given(texts=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=4))
@FUZZ
def test_well_framed_bytes_are_classified_like_json(server, texts):
    raw = length_prefixed([t.encode() for t in texts])
    tensor = {"name": "text", "datatype": "BYTES", "shape": [len(texts)]}
    head = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}]})
    binary = server.post(
        "/v2/models/tiny-lstm/infer",
        content=head.encode() + raw,
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    plain = server.post("/v2/models/tiny-lstm/infer", json={"inputs": [{**tensor, "data": texts}]})
    assert binary.status_code == plain.status_code
    if plain.status_code == 200:
        assert binary.json()["outputs"] == plain.json()["outputs"]
    else:
        assert binary.json() == plain.json()  # the same 4xx, e.g. a text with no words


values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**30), 10**30),
    st.text(max_size=5),
    st.none(),
    st.booleans(),
    st.lists(st.floats(allow_nan=False), max_size=2),
)
session_ids = st.one_of(st.text(max_size=40), st.from_regex(r"[0-9a-f]{32}", fullmatch=True))


@given(
    step=st.lists(values, max_size=MAX_VALUES + 4),
    parameters=st.dictionaries(
        st.sampled_from(["attention", "horizon", "x"]), values | st.booleans(), max_size=2
    ),
    mangle=st.booleans(),
    stranger=session_ids,
)
@FUZZ
def test_session_routes_never_get_a_server_error(server, step, parameters, mangle, stranger):
    created = check(server.post("/v1/models/tiny-forecast/sessions"))
    session = created["session_id"]
    target = quote(stranger, safe="") if mangle else session
    base = "/v1/models/tiny-forecast/sessions/"
    try:
        answer = server.post(
            f"{base}{target}:step", json={"values": step, "parameters": parameters}
        )
    except ValueError:
        return  # a value JSON cannot carry (NaN): httpx refuses to send it
    body = check(answer)
    if answer.status_code == 200:
        assert body["steps"] == len(step) and len(body["forecast"]) == created["horizon"]
        assert np.all(np.isfinite(body["forecast"]))
    check(server.get(f"{base}{target}"))
    check(server.delete(f"{base}{target}"))
    check(server.delete(f"{base}{session}"))
