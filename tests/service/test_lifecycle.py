"""What operators do to a running server: publish and retire versions for weeks, break one,
lose the repository folder. Nothing may leak, and every failure is told once."""

import gc
import json
import logging
import shutil
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.conftest import copy_version, wait_ready
from tests.waiting import wait_for


def version_threads() -> int:
    """Native threads (onnxruntime's pools) plus batch and decode threads: what versions hold.
    The event loop's own worker pool grows on demand and is left out."""
    status = Path("/proc/self/status").read_text()
    native = int(
        next(line for line in status.splitlines() if line.startswith("Threads:")).split()[1]
    )
    python = threading.enumerate()
    held = [t for t in python if t.name.startswith(("batch", "decode"))]
    return native - len(python) + len(held)


def publish(source: Path, repository: Path, version: int, broken: bool = False) -> Path:
    """Publish a copy of `source` as live/<version> the way export does: complete, then renamed."""
    hidden = copy_version(source, repository, "live", version, folder=f".staging-{version}")
    if broken:
        break_manifest(hidden)
    return hidden.rename(hidden.with_name(str(version)))


def served(client: TestClient) -> list[int]:
    return client.get("/v1/models/live").json()["versions"]


def predict(client: TestClient) -> dict:
    response = client.post("/v1/models/live:predict", json={"instances": ["great film"]})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def live(tiny_repository: Path, tmp_path: Path):
    """An app polling a repository that holds live/1 (a copy of tiny-lstm) every 20 ms."""
    source = tiny_repository / "tiny-lstm" / "1"
    copy_version(source, tmp_path, "live", 1)
    app = create_app(Settings(model_repository=tmp_path, providers="cpu", repository_poll_s=0.02))
    with TestClient(app) as client:
        wait_ready(client)
        yield client, app, tmp_path, source


def test_retiring_a_version_frees_its_task_threads_and_metric_series(live):
    client, app, repository, source = live
    predict(client)  # the batcher's thread exists now
    tasks, threads = [], 0
    for version in range(2, 8):
        tasks.append(weakref.ref(app.state.repository.live.get("live").task))
        publish(source, repository, version)
        wait_for(lambda v=version: served(client) == [v], what=f"version {version}")
        assert predict(client)["model_version"] == str(version)
        shutil.rmtree(repository / "live" / str(version - 1))
        if version == 3:  # the loop's own worker threads have started by now
            threads = version_threads()

    def retired_are_gone() -> bool:
        gc.collect()
        return all(task() is None for task in tasks)

    wait_for(retired_are_gone, what="the retired tasks to be freed")
    wait_for(lambda: version_threads() <= threads, what=f"threads back to {threads}")
    metrics = client.get("/metrics").text
    for version in range(1, 7):
        assert f'version="{version}"' not in metrics
    assert 'rnnserve_model_ready{model="live",version="7"} 1.0' in metrics
    assert 'rnnserve_queue_depth{model="live",version="7"} 0.0' in metrics


def count_scans(repository) -> Callable[[], int]:
    """How many scans of the repository have finished since this call: a test waits for
    polls to happen instead of sleeping for as long as it hopes they take."""
    scan, done = repository._scan, [0]

    def counted(*args):
        try:
            return scan(*args)
        finally:
            done[0] += 1

    repository._scan = counted
    return lambda: done[0]


def break_manifest(folder: Path) -> None:
    (folder / "manifest.json").write_text("{not json")


def test_a_broken_version_is_logged_once_and_retried_when_its_folder_changes(live, caplog):
    client, app, repository, source = live
    caplog.set_level(logging.INFO, logger="rnnserve")
    broken = publish(source, repository, 2, broken=True)
    wait_for(lambda: client.get("/v1/models/live").json()["status"][-1]["state"] == "failed")
    scans = count_scans(app.state.repository)
    wait_for(lambda: scans() >= 20, what="20 more scans of the repository")
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage()[:26] for r in failures] == ["could not load live/2: Val"]

    # Visible everywhere while it stays broken; version 1 serves and the server is ready.
    assert served(client) == [1] and predict(client)["model_version"] == "1"
    index = client.post("/v2/repository/index").json()
    assert index[-1]["version"] == "2" and index[-1]["state"] == "UNAVAILABLE"
    assert "invalid manifest" in index[-1]["reason"] or "JSON" in index[-1]["reason"]
    metadata = client.get("/v2/models/live/versions/2").json()
    assert metadata["state"] == "failed" and metadata["error"] == index[-1]["reason"]
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200
    assert ready.json()["problems"] == [f"live version 2 is failed: {metadata['error']}"]

    # Fixed in place: the folder changed, so it is tried again, and it serves.
    shutil.copy(source / "manifest.json", broken / "manifest.json")
    manifest = json.loads((broken / "manifest.json").read_text())
    (broken / "manifest.json").write_text(json.dumps({**manifest, "name": "live", "version": 2}))
    wait_for(lambda: served(client) == [2], what="the fixed version")
    assert client.get("/v2/health/ready").json() == {"ready": True}


def test_an_explicit_load_tries_a_failed_version_again(live, caplog):
    client, _, repository, source = live
    publish(source, repository, 2, broken=True)
    wait_for(lambda: client.get("/v1/models/live").json()["status"][-1]["state"] == "failed")
    caplog.clear()
    loaded = client.post("/v2/repository/models/live/load")
    assert loaded.status_code == 200 and loaded.json()["versions"] == ["1"]
    assert [r.getMessage()[:22] for r in caplog.records] == ["could not load live/2:"]


def test_a_failed_scan_is_logged_once_and_is_a_readiness_reason(tiny_repository, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="rnnserve")
    repository = tmp_path / "not-yet"
    app = create_app(Settings(model_repository=repository, providers="cpu", repository_poll_s=0.02))
    scans = count_scans(app.state.repository)
    with TestClient(app) as client:
        wait_for(lambda: scans() >= 10, what="10 scans of the missing repository")
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 503
        assert "the model repository cannot be read" in ready.json()["error"]
        assert str(repository) in ready.json()["error"]
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "cannot be read" in errors[0].getMessage()
        staging = tmp_path / "staging"  # the whole repository appears at once
        copy_version(tiny_repository / "tiny-lstm" / "1", staging, "live", 1)
        staging.rename(repository)
        wait_ready(client)
        assert predict(client)["model_version"] == "1"


def test_a_manifest_must_list_every_file_it_refers_to(live):
    client, _, repository, source = live
    folder = copy_version(source, repository / ".staging", "live", 2)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["files"]["model.onnx"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    folder.rename(repository / "live" / "2")
    wait_for(lambda: client.get("/v1/models/live").json()["status"][-1]["state"] == "failed")
    error = client.get("/v1/models/live").json()["status"][-1]["error"]
    assert error == "the manifest's files map does not list model.onnx"
