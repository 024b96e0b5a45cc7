"""The default date model behind a real server: concurrent clients, each answer its own."""

import asyncio
import shutil

import httpx
import pytest

from model_src import dates
from tests.conftest import DEFAULT_MODELS
from tests.live_server import live_server

DATES = DEFAULT_MODELS / "dates"
pytestmark = pytest.mark.skipif(not DATES.is_dir(), reason="models/dates is not published")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repository = tmp_path_factory.mktemp("repository")
    shutil.copytree(DATES, repository / "dates")
    with live_server(repository) as url:
        yield url


def test_concurrent_clients_each_get_their_own_date(server):
    examples = dates.generate(dates.HELDOUT_LOCALES, 60, seed=11)

    async def send_all():
        async with httpx.AsyncClient(base_url=server, timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/v1/models/dates:predict",
                        json={"instances": [e.text], "parameters": {"beam_width": 1 + i % 3}},
                    )
                    for i, e in enumerate(examples)
                )
            )

    responses = asyncio.run(send_all())
    outputs = [r.json()["predictions"][0]["output"] for r in responses]
    correct = sum(o == e.target for o, e in zip(outputs, examples, strict=True))
    assert correct >= len(examples) - 1  # the model's held-out exact match is 99.6 %
    alone = httpx.post(
        f"{server}/v1/models/dates:predict", json={"instances": [e.text for e in examples]}
    ).json()["predictions"]
    greedy = [o for i, o in enumerate(outputs) if i % 3 == 0]
    assert greedy == [p["output"] for i, p in enumerate(alone) if i % 3 == 0]
