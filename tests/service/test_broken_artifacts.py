"""A broken version is reported and never served; the rest keep serving."""

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.conftest import copy_version, wait_ready
from tests.waiting import wait_for

BROKEN = {
    "corrupt-onnx": "InvalidProtobuf",
    "bad-manifest": "ValidationError",
    "unknown-task": "task 'juggling' is not served by this version of rnnserve",
    "bad-sha": "vocab.txt does not match the sha256 in the manifest",
    "no-manifest": "FileNotFoundError",
    "unlisted-graph": "the manifest's files map does not list model.onnx",
    "unlisted-vocab": "the manifest's files map does not list vocab.txt",
}


def break_version(folder: Path, kind: str) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    if kind == "corrupt-onnx":
        # Garbage whose sha256 is recorded, so only onnxruntime can notice.
        (folder / "model.onnx").write_bytes(b"not an onnx graph" * 100)
        from contract.manifest import sha256_of

        manifest["files"]["model.onnx"] = sha256_of(folder / "model.onnx")
    elif kind == "bad-manifest":
        manifest["schema_version"] = 99
    elif kind == "unknown-task":
        manifest["task"] = "juggling"
    elif kind == "bad-sha":
        with (folder / "vocab.txt").open("a") as f:
            f.write("extra\n")
    elif kind.startswith("unlisted-"):
        # A graph or vocabulary missing from `files` would be loaded unverified.
        del manifest["files"]["model.onnx" if kind == "unlisted-graph" else "vocab.txt"]
    elif kind == "no-manifest":
        (folder / "manifest.json").unlink()
        return
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module", params=[True, False], ids=["strict", "lenient"])
def broken(request, tiny_repository, tmp_path_factory):
    repository = tmp_path_factory.mktemp("broken")
    source = tiny_repository / "tiny-lstm" / "1"
    copy_version(source, repository, "good", 1)
    for name in BROKEN:
        break_version(copy_version(source, repository, name, 1), name)
    app = create_app(
        Settings(
            model_repository=repository,
            providers="cpu",
            strict_readiness=request.param,
            repository_poll_s=0,
        )
    )
    with TestClient(app) as client:
        wait_for(lambda: app.state.repository.loaded, "the repository's first scan")
        yield client, request.param, repository


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_version_is_reported_with_its_error(broken, name):
    client, _, repository = broken
    detail = client.get(f"/v1/models/{name}").json()
    assert detail["ready"] is False and detail["versions"] == []
    assert detail["status"][0]["state"] == "failed"
    assert BROKEN[name] in detail["status"][0]["error"]
    assert str(repository) not in detail["status"][0]["error"]  # no filesystem path
    metadata = client.get(f"/v2/models/{name}").json()
    assert metadata["state"] == "failed" and BROKEN[name] in metadata["error"]
    assert client.get(f"/v2/models/{name}/ready").status_code == 400
    response = client.post(f"/v1/models/{name}:predict", json={"instances": ["great"]})
    assert response.status_code == 503 and BROKEN[name] in response.json()["error"]


def test_the_good_model_keeps_serving_and_the_server_stays_live(broken):
    client, strict, _ = broken
    response = client.post("/v1/models/good:predict", json={"instances": ["great"]})
    assert response.status_code == 200
    assert response.json()["predictions"][0]["label"] in ("negative", "positive")
    assert client.get("/v2/health/live").status_code == 200
    ready = client.get("/v2/health/ready")
    if strict:
        assert ready.status_code == 503
        assert "bad-sha version 1 is failed" in ready.json()["error"]
    else:
        wait_ready(client)
