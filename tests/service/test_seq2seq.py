"""The seq2seq task in process: predict, attention, V2 BYTES, bad input, step-level batching."""

import asyncio

import numpy as np
import pytest

from contract.manifest import Manifest
from service.errors import DeadlineExceeded, InternalError, Overloaded
from service.runtime import create_inference_session
from service.settings import BatchingSettings, Settings
from service.tasks.base import TaskContext
from service.tasks.seq2seq import Seq2SeqTask
from tests.seq2seq_helpers import tiny_seq2seq_repository
from tests.waiting import wait_for_async

TEXTS = ["22 novembre 2026", "Nov 22, '26", "2026年11月22日", "Sunday, 22.11.2026", "3/4/1999"]


@pytest.fixture(scope="module")
def repository():
    return tiny_seq2seq_repository("gru")


@pytest.fixture(scope="module")
def client(repository):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from tests.conftest import wait_ready

    settings = Settings(model_repository=repository, providers="cpu", max_instances=8)
    with TestClient(create_app(settings)) as test_client:
        wait_ready(test_client)
        yield test_client


def make_task(repository, step_batching=True, **limits) -> Seq2SeqTask:
    folder = repository / "tiny-dates" / "1"
    settings = Settings(model_repository=repository, providers="cpu", intra_op_threads=1)
    return Seq2SeqTask(
        TaskContext(
            manifest=Manifest.read(folder),
            folder=folder,
            settings=settings,
            limits=BatchingSettings(**limits),
            create_inference_session=lambda graph: create_inference_session(graph, settings),
            on_batch=lambda stats: None,
        ),
        step_batching=step_batching,
    )


def predict(client, body):
    return client.post("/v1/models/tiny-dates:predict", json=body)


def test_predict_returns_the_output_text_as_decoded_alone(client, repository):
    response = predict(client, {"instances": TEXTS})
    assert response.status_code == 200, response.text
    alone = make_task(repository).decode_alone(TEXTS)
    assert [p["output"] for p in response.json()["predictions"]] == [a.text for a in alone]
    assert all(set(p) <= {"output", "reached_max_length"} for p in response.json()["predictions"])


def test_attention_is_output_chars_by_input_chars_rows_summing_to_one(client):
    body = {"instances": ["22\u202fnov. 2026"], "parameters": {"attention": True}}
    prediction = predict(client, body).json()["predictions"][0]
    assert prediction["input_chars"] == list("22 nov. 2026")  # NFKC, as in training
    assert "".join(prediction["output_chars"]) == prediction["output"]
    matrix = np.array(prediction["attention"])
    assert matrix.shape == (len(prediction["output_chars"]), len(prediction["input_chars"]))
    np.testing.assert_allclose(matrix.sum(1), 1, atol=1e-4)


def test_beam_search_is_a_parameter(client):
    body = {"instances": TEXTS[:2], "parameters": {"beam_width": 4, "attention": True}}
    response = predict(client, body)
    assert response.status_code == 200, response.text
    for p in response.json()["predictions"]:
        assert np.array(p["attention"]).shape == (len(p["output_chars"]), len(p["input_chars"]))


def test_service_beam_search_equals_pytorch_beam_search(repository):
    import torch

    from contract.chars import CharVocabulary
    from model_src.train_seq2seq import TRAINER
    from tests.seq2seq_helpers import tiny_seq2seq_checkpoint

    model, checkpoint = TRAINER.load_checkpoint(tiny_seq2seq_checkpoint("gru"))
    source = CharVocabulary(tuple(checkpoint.input_vocab))
    target = CharVocabulary(tuple(checkpoint.output_vocab))
    served = make_task(repository).decode_alone(TEXTS, width=3)
    for text, result in zip(TEXTS, served, strict=True):
        ids = torch.tensor([source.encode(text)])
        best, _ = model.beam_search(ids, torch.tensor([ids.shape[1]]), 14, width=3)
        assert result.text == target.decode(best)


def test_v2_infer_takes_and_returns_bytes(client):
    request = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": TEXTS[:2]}]}
    response = client.post("/v2/models/tiny-dates/infer", json=request)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("output", "BYTES", [2])
    v1 = predict(client, {"instances": TEXTS[:2]}).json()["predictions"]
    assert output["data"] == [p["output"] for p in v1]


def test_v2_metadata_names_bytes_in_and_out(client):
    body = client.get("/v2/models/tiny-dates").json()
    assert body["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert body["outputs"] == [{"name": "output", "datatype": "BYTES", "shape": [-1]}]


def test_unseen_characters_map_to_unk_instead_of_failing(client):
    body = {"instances": ["☃ 22 ✈ 2026 🙂", "✈ 22 🙂 2026 ☃"], "parameters": {"attention": True}}
    first, second = predict(client, body).json()["predictions"]
    assert first["input_chars"][0] == "☃" and second["input_chars"][0] == "✈"  # as typed
    # Every unseen character reads as <unk>: the two inputs decode alike.
    assert first["output"] == second["output"] and first["attention"] == second["attention"]


BAD_INPUTS = [
    ({"instances": [""]}, 422, "instances[0] is empty"),
    ({"instances": ["  "]}, 422, "instances[0] is empty"),
    ({"instances": ["x" * 49]}, 422, "instances[0] has 49 characters; this model takes at most 48"),
    ({"instances": ["ok", 5]}, 422, "instances[1] must be a string, got int"),
    ({"instances": ["ok"], "parameters": {"beam_width": 9}}, 422, "beam_width must be in 1..8"),
    ({"instances": ["ok"], "parameters": {"beam_width": 0}}, 422, "parameters.beam_width"),
    ({"instances": ["ok"], "parameters": {"beam": 2}}, 422, "parameters.beam"),
    ({"instances": ["ok"], "parameters": {"max_output_chars": 0}}, 422, "max_output_chars"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_INPUTS)
def test_bad_input_gets_a_clear_4xx(client, body, status, message):
    response = predict(client, body)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_v2_bad_input_is_a_400(client):
    request = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [""]}]}
    response = client.post("/v2/models/tiny-dates/infer", json=request)
    assert response.status_code == 400 and "text[0] is empty" in response.json()["error"]
    request["inputs"][0]["name"] = "chars"
    assert client.post("/v2/models/tiny-dates/infer", json=request).status_code == 400


@pytest.mark.parametrize("name", ["max_output_chars", "max_output_tokens"])
def test_max_output_length_is_enforced_under_either_name(client, name):
    """Characters or tokens, the output's units: both names say the same limit."""
    body = {"instances": TEXTS[:1], "parameters": {name: 3}}
    prediction = predict(client, body).json()["predictions"][0]
    assert len(prediction["output"]) <= 3 and prediction.get("reached_max_length") is True


def test_giving_both_names_of_the_output_limit_is_refused(client):
    body = {"instances": TEXTS[:1], "parameters": {"max_output_tokens": 3, "max_output_chars": 3}}
    response = predict(client, body)
    assert response.status_code == 422
    assert response.json() == {
        "error": "parameters.max_output_chars: Extra inputs are not permitted"
    }


def test_concurrent_requests_of_different_lengths_equal_decoding_each_alone(repository):
    task = make_task(repository, max_batch_size=16)
    cases = [(text, width, length) for text in TEXTS for width in (1, 3) for length in (1, 5, 14)]
    expected = [task.decode_alone([t], width, length)[0] for t, width, length in cases]

    async def main():
        async def one(text, width, length):
            params = {"beam_width": width, "max_output_chars": length, "attention": True}
            return (await task.predict([text], params, timeout=30))[0]

        return await asyncio.gather(*(one(*case) for case in cases))

    got = asyncio.run(main())
    for alone, prediction in zip(expected, got, strict=True):
        assert prediction["output"] == alone.text
        np.testing.assert_allclose(prediction["attention"], alone.attention, atol=1e-5)
    task.close()


async def decoding(task, timeout: float = 30.0) -> None:
    """Return once the task's decode loop holds a sequence; fail after `timeout` seconds."""
    await wait_for_async(lambda: task._active, "the decode to start", timeout)


def test_short_request_joining_mid_decode_finishes_before_the_long_one(repository):
    task = make_task(repository)

    async def main():
        long = asyncio.ensure_future(
            task.predict([TEXTS[3]], {"beam_width": 8, "max_output_chars": 14}, timeout=30)
        )
        await decoding(task)  # the long decode has started
        short = await task.predict([TEXTS[0]], {"max_output_chars": 1}, timeout=30)
        assert not long.done()
        return short, await long

    short, long = asyncio.run(main())
    assert len(short[0]["output"]) <= 1 and long[0]["output"]
    task.close()


def test_full_queue_refuses_at_once_and_timeouts_raise(repository):
    task = make_task(repository, max_queue_size=2)

    async def main():
        with pytest.raises(Overloaded):
            await task.predict(TEXTS[:3], {}, timeout=30)
        with pytest.raises(DeadlineExceeded):
            await task.predict(TEXTS[:1], {"beam_width": 8}, timeout=1e-6)
        await task.drain()
        assert task.queue_depth == 0 and not task._active

    asyncio.run(main())
    task.close()


def test_cancelled_requests_leave_the_batch(repository):
    task = make_task(repository)

    async def main():
        gone = asyncio.ensure_future(task.predict(TEXTS, {"beam_width": 8}, timeout=30))
        await decoding(task)
        gone.cancel()
        kept = await task.predict(TEXTS[:1], {}, timeout=30)
        await task.drain()
        return kept

    assert asyncio.run(main())[0]["output"] == task.decode_alone(TEXTS[:1])[0].text
    assert not task._active
    task.close()


def test_decode_steps_are_counted_as_decoder_rows_not_as_batches(client):
    def count(metric: str) -> float:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith(f'{metric}_count{{model="tiny-dates"'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = count("rnnserve_decode_step_rows")
    response = predict(client, {"instances": TEXTS[:2], "parameters": {"max_output_chars": 3}})
    assert [len(p["output"]) <= 3 for p in response.json()["predictions"]] == [True, True]
    assert 1 <= count("rnnserve_decode_step_rows") - before <= 4  # one per step, at most 3 + 1
    assert count("rnnserve_batch_size") == 0


def test_a_failing_step_answers_its_callers_and_the_decode_goes_on(repository):
    task = make_task(repository)
    step, failures = task.step, [RuntimeError("the session broke")]

    def step_that_fails_once(admitted, active):
        if failures:
            raise failures.pop()
        return step(admitted, active)

    task.step = step_that_fails_once

    async def main():
        failed = await asyncio.gather(task.predict(TEXTS[:2], {}, 30), return_exceptions=True)
        kept = await task.predict(TEXTS[:1], {}, timeout=30)
        return failed[0], kept

    failed, kept = asyncio.run(main())
    assert isinstance(failed, InternalError) and "RuntimeError" in failed.message
    assert kept[0]["output"] == task.decode_alone(TEXTS[:1])[0].text
    assert task.queue_depth == 0 and not task._active
    task.close()


NO_TORCH = """
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
from fastapi.testclient import TestClient
from service.app import create_app
from service.settings import Settings
from tests.conftest import wait_ready

with TestClient(create_app(Settings(model_repository=sys.argv[1], providers="cpu"))) as client:
    wait_ready(client)
    body = client.post("/v1/models/tiny-dates:predict", json={"instances": ["1 May 2026"]})
    assert body.status_code == 200, body.text
    assert isinstance(body.json()["predictions"][0]["output"], str), body.text
assert not any(n == "torch" or n.startswith("torch.") for n in sys.modules if sys.modules[n])
"""


def test_seq2seq_serves_without_torch(repository):
    import subprocess
    import sys

    from tests.conftest import ROOT

    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(repository)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
