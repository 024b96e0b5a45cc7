"""A real server picks up new versions and retires old ones without failing a request."""

import json
import shutil
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from export.publish import publish
from tests.conftest import copy_version
from tests.live_server import live_server
from tests.test_real_server import expected_probabilities, random_texts
from tests.waiting import wait_for


def publish_copy(source: Path, repository: Path | str, name: str) -> Path | str:
    """What `rnnserve export` does, with an existing version folder as the content."""

    def write(folder: Path, version: int) -> None:
        for file in source.iterdir():
            shutil.copy(file, folder / file.name)
        manifest = json.loads((source / "manifest.json").read_text())
        manifest.update(name=name, version=version)
        (folder / "manifest.json").write_text(json.dumps(manifest))

    return publish(repository, name, write)


class Client(threading.Thread):
    """Sends predictions back to back until stopped, keeping every answer."""

    def __init__(self, url: str, texts: list[str], model: str = "live") -> None:
        super().__init__(daemon=True)
        self.url, self.texts, self.model = url, texts, model
        self.answers: list[tuple[str, httpx.Response]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            i = 0
            while not self.stop.is_set():
                text = self.texts[i % len(self.texts)]
                self.answers.append(
                    (
                        text,
                        client.post(f"/v1/models/{self.model}:predict", json={"instances": [text]}),
                    )
                )
                i += 1


def answered(clients: list[Client]) -> int:
    return min(len(c.answers) for c in clients)


def served_versions(url: str) -> list[int]:
    return httpx.get(f"{url}/v1/models/live").json()["versions"]


@pytest.fixture
def repository(tiny_repository: Path, tmp_path: Path) -> Path:
    copy_version(tiny_repository / "tiny-lstm" / "1", tmp_path, "live", 1)
    return tmp_path


def test_a_new_version_replaces_the_old_under_load_with_no_failed_request(
    tiny_repository: Path, repository: Path
):
    versions = {1: tiny_repository / "tiny-lstm" / "1", 2: tiny_repository / "tiny-gru" / "1"}
    with live_server(repository, repository_poll_s="0.1") as url:
        short = [t for t in random_texts(200) if len(t.split()) <= 32]  # the tiny models take 32
        clients = [Client(url, short[s::4]) for s in range(4)]
        for c in clients:
            c.start()
        wait_for(lambda: answered(clients) >= 10, "10 answers to each client from version 1")
        publish_copy(versions[2], repository, "live")
        wait_for(lambda: served_versions(url) == [2], "version 2 served alone")
        then = answered(clients)
        wait_for(lambda: answered(clients) >= then + 10, "10 more answers each from version 2")
        for c in clients:
            c.stop.set()
            c.join()
        index = httpx.post(f"{url}/v2/repository/index").json()

    answers = [a for c in clients for a in c.answers]
    assert len(answers) > 50
    assert [r.status_code for _, r in answers] == [200] * len(answers)
    seen = {int(r.json()["model_version"]) for _, r in answers}
    assert seen == {1, 2}
    for text, response in answers:
        body = response.json()
        expected = expected_probabilities("live", text, versions[int(body["model_version"])])
        got = list(body["predictions"][0]["probabilities"].values())
        np.testing.assert_allclose(got, expected, atol=1e-5)
    assert index == [
        {
            "name": "live",
            "version": "1",
            "state": "UNAVAILABLE",
            "reason": "not in the version policy",
        },
        {"name": "live", "version": "2", "state": "READY", "reason": ""},
    ]


def test_explicit_unload_and_load(repository: Path):
    with live_server(repository, repository_poll_s="0") as url:

        def predict() -> httpx.Response:
            return httpx.post(f"{url}/v1/models/live:predict", json={"instances": ["great"]})

        assert predict().status_code == 200
        unloaded = httpx.post(f"{url}/v2/repository/models/live/unload")
        assert unloaded.status_code == 200
        assert predict().status_code == 404
        index = httpx.post(f"{url}/v2/repository/index").json()
        assert index == [
            {"name": "live", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}
        ]
        loaded = httpx.post(f"{url}/v2/repository/models/live/load")
        assert loaded.json() == {"name": "live", "versions": ["1"]}
        assert predict().status_code == 200
        missing = httpx.post(f"{url}/v2/repository/models/nope/load")
        assert missing.status_code == 404
        assert httpx.post(f"{url}/v2/repository/models/nope/unload").status_code == 404


def test_a_broken_new_version_leaves_the_old_one_serving(repository: Path):
    with live_server(repository, repository_poll_s="0.1", strict_readiness="false") as url:
        folder = repository / "live" / ".staging"
        folder.mkdir()
        (folder / "manifest.json").write_text("{not json")
        folder.rename(repository / "live" / "2")
        wait_for(
            lambda: httpx.get(f"{url}/v1/models/live").json()["status"][-1]["state"] == "failed"
        )
        detail = httpx.get(f"{url}/v1/models/live").json()
        assert detail["versions"] == [1]
        response = httpx.post(f"{url}/v1/models/live:predict", json={"instances": ["great"]})
        assert response.status_code == 200 and response.json()["model_version"] == "1"
