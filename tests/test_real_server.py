"""Against a real uvicorn process serving the committed default models."""

import asyncio
import functools
import random
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from bench.payloads import WORDS
from contract.manifest import Manifest
from contract.words import Vocabulary, tokenize
from tests.conftest import DEFAULT_MODELS
from tests.live_server import live_server

DEFAULT = sorted(p.name for p in DEFAULT_MODELS.iterdir() if p.is_dir())


@functools.cache
def reference(folder: Path) -> tuple[ort.InferenceSession, Vocabulary]:
    manifest = Manifest.read(folder)
    vocab = Vocabulary.load(folder / manifest.preprocessing.vocab_file)
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    return session, vocab


def latest(name: str) -> Path:
    return max(
        (p for p in (DEFAULT_MODELS / name).iterdir() if p.name.isdigit()),
        key=lambda p: int(p.name),
    )


CLASSIFIERS = [n for n in DEFAULT if Manifest.read(latest(n)).task == "classify"]


def expected_probabilities(name: str, text: str, folder: Path | None = None) -> list[float]:
    """What onnxruntime gives in-process for this text alone (batch of one)."""
    session, vocab = reference(folder or latest(name))
    ids = np.array([vocab.encode(tokenize(text))], dtype=np.int64)
    probabilities, _ = session.run(None, {"tokens": ids, "lengths": np.array([ids.shape[1]])})
    return probabilities[0].tolist()


def tolerance(name: str) -> float:
    """int8 graphs quantise activations per batch, so a neighbour shifts an answer slightly."""
    return 2e-2 if name.endswith("-int8") else 1e-5


def random_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(1, 40))) for _ in range(n)]


@pytest.fixture(scope="module")
def server():
    with live_server(DEFAULT_MODELS) as url:
        yield url


def test_default_models_are_listed(server):
    models = httpx.get(f"{server}/v1/models").json()["models"]
    assert [m["name"] for m in models] == DEFAULT
    assert all(m["ready"] for m in models)
    assert {m["name"] for m in models if m["task"] == "classify"} == set(CLASSIFIERS)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_concurrent_predictions_each_match_their_own_input(server, name):
    texts = random_texts(50, seed=len(name))

    async def send_all():
        async with httpx.AsyncClient(base_url=server, timeout=30) as client:
            return await asyncio.gather(
                *(client.post(f"/v1/models/{name}:predict", json={"instances": [t]}) for t in texts)
            )

    responses = asyncio.run(send_all())
    for text, response in zip(texts, responses, strict=True):
        assert response.status_code == 200, response.text
        got = response.json()["predictions"][0]["probabilities"]
        np.testing.assert_allclose(
            list(got.values()), expected_probabilities(name, text), atol=tolerance(name)
        )


def test_bad_requests_do_not_disturb_good_ones_in_the_same_burst(server):
    name = CLASSIFIERS[0]
    texts = random_texts(30, seed=7)
    bad = [{"instances": [""]}, {"instances": [3]}, {"instances": []}, {"nope": 1}]

    async def send_all():
        async with httpx.AsyncClient(base_url=server, timeout=30) as client:
            good = [
                client.post(f"/v1/models/{name}:predict", json={"instances": [t]}) for t in texts
            ]
            wrong = [client.post(f"/v1/models/{name}:predict", json=b) for b in bad * 5]
            return await asyncio.gather(*good), await asyncio.gather(*wrong)

    good, wrong = asyncio.run(send_all())
    assert all(r.status_code == 422 and "error" in r.json() for r in wrong)
    for text, response in zip(texts, good, strict=True):
        got = list(response.json()["predictions"][0]["probabilities"].values())
        np.testing.assert_allclose(got, expected_probabilities(name, text), atol=1e-5)
    assert httpx.get(f"{server}/v2/health/ready").status_code == 200
