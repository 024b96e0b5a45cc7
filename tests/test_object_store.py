"""A model repository on a real S3-compatible server (SeaweedFS): publishers claim a version
number and upload the manifest last; servers poll the bucket, switch versions under load, never
serve a half-uploaded or corrupted version, and keep serving while the store is down."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from contract.object_store import CLAIM_FILE, AlreadyExists, ObjectStore, StoreError
from export.publish import publish
from service.loading import verify_files
from service.settings import Settings
from service.store_source import StoreSource
from tests.live_server import error_records, free_port, live_server
from tests.object_store import BUCKET, MISSING, have_weed, object_store_server
from tests.test_live_repository import Client, publish_copy
from tests.test_real_server import expected_probabilities, random_texts
from tests.waiting import wait_for

pytestmark = pytest.mark.skipif(not have_weed(), reason=f"needs {MISSING}")
URL = f"s3://{BUCKET}/models"


@pytest.fixture(scope="module")
def store():
    with object_store_server() as server, pytest.MonkeyPatch.context() as env:
        for key, value in server.env().items():  # boto3's standard variables, in-process too
            env.setenv(key, value)
        yield server


@pytest.fixture(scope="module")
def fleet(store, tiny_repository, tmp_path_factory):
    """Two servers polling the same bucket, each with its own cache and log."""
    publish_copy(tiny_repository / "tiny-lstm" / "1", URL, "base")
    logs = tmp_path_factory.mktemp("fleet-logs")
    with (
        live_server(
            URL,
            log_file=logs / "a.log",
            repository_poll_s="0.1",
            model_cache=str(tmp_path_factory.mktemp("cache-a")),
        ) as a,
        live_server(
            URL,
            log_file=logs / "b.log",
            repository_poll_s="0.1",
            model_cache=str(tmp_path_factory.mktemp("cache-b")),
        ) as b,
    ):
        a.log, b.log = logs / "a.log", logs / "b.log"
        yield [a, b]


def versions(url: str, model: str) -> list[int]:
    answer = httpx.get(f"{url}/v1/models/{model}")
    return answer.json()["versions"] if answer.status_code == 200 else []


def predict(url: str, model: str, text: str = "great film") -> dict:
    answer = httpx.post(f"{url}/v1/models/{model}:predict", json={"instances": [text]})
    assert answer.status_code == 200, answer.text
    return answer.json()


# -- publishing --------------------------------------------------------------------------------


def test_a_conditional_write_refuses_an_object_that_is_there(store):
    objects = ObjectStore(f"s3://{BUCKET}/conditional")
    objects.write("claim", b"first", only_if_absent=True)
    with pytest.raises(AlreadyExists):
        objects.write("claim", b"second", only_if_absent=True)
    assert objects.read("claim") == b"first"


def test_racing_publishers_each_get_a_version_of_their_own(store, tiny_repository, tmp_path):
    url, publishers = f"s3://{BUCKET}/race", 6
    start = threading.Barrier(publishers)
    published: dict[int, str] = {}

    def one(i: int) -> None:
        def write(folder: Path, version: int) -> None:
            source = tiny_repository / "tiny-lstm" / "1"
            for file in source.iterdir():
                (folder / file.name).write_bytes(file.read_bytes())
            manifest = json.loads((source / "manifest.json").read_text())
            manifest.update(name="raced", version=version, description=f"publisher {i}")
            (folder / "manifest.json").write_text(json.dumps(manifest))

        start.wait()
        published[i] = str(publish(url, "raced", write))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(publishers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    numbers = sorted(int(where.rsplit("/", 1)[1]) for where in published.values())
    assert numbers == list(range(1, publishers + 1))
    mirrored = StoreSource(url, tmp_path).discover()["raced"]
    assert sorted(mirrored) == numbers
    for i, where in published.items():
        folder = mirrored[int(where.rsplit("/", 1)[1])]
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["description"] == f"publisher {i}"
        verify_files(_manifest(folder), folder)  # no publisher's files overwrote another's
    keys = {o.key for o in ObjectStore(url).list()}
    assert {f"raced/{n}/{CLAIM_FILE}" for n in numbers} <= keys


def test_rnnserve_export_publishes_the_next_version_to_a_bucket(store, tiny_checkpoints, tmp_path):
    from export.__main__ import main as export

    url = f"s3://{BUCKET}/cli"
    objects = ObjectStore(url)
    objects.write("exported/1/.claim", b"")  # a number taken by an earlier, abandoned upload
    where = export([str(tiny_checkpoints["gru"]), "--name", "exported", "--repository", url])
    assert where == f"{url}/exported/2"
    (folder,) = StoreSource(url, tmp_path).discover()["exported"].values()
    manifest = _manifest(folder)
    assert (manifest.name, manifest.version) == ("exported", 2)
    verify_files(manifest, folder)
    keys = {o.key for o in objects.list("exported/2")}
    assert keys == {f"exported/2/{f}" for f in [*manifest.files, "manifest.json", CLAIM_FILE]}


# -- serving from the bucket ---------------------------------------------------------------------


def test_two_servers_switch_to_a_new_version_under_load_with_no_failed_request(
    fleet, tiny_repository
):
    sources = {1: tiny_repository / "tiny-lstm" / "1", 2: tiny_repository / "tiny-gru" / "1"}
    publish_copy(sources[1], URL, "switch")
    for url in fleet:
        wait_for(lambda url=url: versions(url, "switch") == [1], "version 1 on both servers")
    short = [t for t in random_texts(200, seed=3) if len(t.split()) <= 32]
    clients = [Client(url, short[i::4], model="switch") for i, url in enumerate(fleet * 2)]
    for c in clients:
        c.start()
    wait_for(lambda: all(len(c.answers) > 5 for c in clients), "answers from version 1")
    publish_copy(sources[2], URL, "switch")
    for url in fleet:
        wait_for(lambda url=url: versions(url, "switch") == [2], "version 2 on both servers")
    answered = [len(c.answers) for c in clients]
    wait_for(
        lambda: all(len(c.answers) > n + 5 for c, n in zip(clients, answered, strict=True)),
        "answers",
    )
    for c in clients:
        c.stop.set()
        c.join()

    for url in fleet:
        answers = [a for c in clients if c.url == url for a in c.answers]
        assert [r.status_code for _, r in answers] == [200] * len(answers)
        assert {int(r.json()["model_version"]) for _, r in answers} == {1, 2}
        for text, response in answers:
            body = response.json()
            expected = expected_probabilities("live", text, sources[int(body["model_version"])])
            got = list(body["predictions"][0]["probabilities"].values())
            np.testing.assert_allclose(got, expected, atol=1e-5)


def test_half_uploaded_and_corrupted_versions_are_not_served(fleet, tiny_repository):
    source = tiny_repository / "tiny-lstm" / "1"
    publish_copy(source, URL, "guarded")
    objects = ObjectStore(URL)
    manifest = json.loads((source / "manifest.json").read_text())
    for version in (2, 3):
        manifest.update(name="guarded", version=version)
        for file in manifest["files"]:
            body = (source / file).read_bytes()
            if version == 3 and file.endswith(".onnx"):
                body = body[:-64] + bytes(64)  # corrupted in the bucket
            objects.write(f"guarded/{version}/{file}", body)
        if version == 3:  # version 2 has no manifest yet: half uploaded
            objects.write(f"guarded/{version}/manifest.json", json.dumps(manifest).encode())
    publish_copy(source, URL, "after-guarded")  # listed once both are there

    for url in fleet:
        wait_for(lambda url=url: versions(url, "after-guarded") == [1], "the later publish")
        detail = httpx.get(f"{url}/v1/models/guarded").json()
        states = {s["version"]: s for s in detail["status"]}
        assert detail["versions"] == [1]
        assert 2 not in states and "2" not in states, detail
        (failed,) = [s for s in detail["status"] if s["state"] == "failed"]
        assert "does not match the sha256" in failed["error"], failed
        assert predict(url, "guarded")["model_version"] == "1"
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200

    manifest.update(version=2)
    objects.write("guarded/2/manifest.json", json.dumps(manifest).encode())  # now complete
    for url in fleet:
        wait_for(lambda url=url: versions(url, "guarded") == [2], "version 2 once complete")
        assert predict(url, "guarded")["model_version"] == "2"


def test_serving_goes_on_while_the_store_is_down_and_the_next_publish_arrives(
    fleet, store, tiny_repository
):
    source = tiny_repository / "tiny-lstm" / "1"
    publish_copy(source, URL, "steady")
    for url in fleet:
        wait_for(lambda url=url: versions(url, "steady") == [1], "version 1 on both servers")
    store.stop()
    try:
        for url in fleet:
            wait_for(
                lambda url=url: "serving the versions known before" in url.log.read_text(),
                "the servers to notice the store is gone",
            )
            for _ in range(20):
                assert predict(url, "steady")["model_version"] == "1"
            assert httpx.get(f"{url}/v2/health/ready").status_code == 200
    finally:
        store.start()
    publish_copy(tiny_repository / "tiny-gru" / "1", URL, "steady")
    for url in fleet:
        wait_for(lambda url=url: versions(url, "steady") == [2], "version 2 after the restart")
        assert predict(url, "steady")["model_version"] == "2"
        log = url.log.read_text()
        assert log.count("serving the versions known before") == 1, "logged once"
        errors = [r["message"] for r in error_records(url.log)]
        assert not [m for m in errors if "steady" in m or "cannot be read" in m], errors


# -- the cache -----------------------------------------------------------------------------------


def test_a_server_starting_while_the_store_is_unreachable_serves_its_cache(
    store, tiny_repository, tmp_path, monkeypatch
):
    url = f"s3://{BUCKET}/cached"
    publish_copy(tiny_repository / "tiny-gru" / "1", url, "kept")
    cache = tmp_path / "cache"
    assert list(StoreSource(url, cache).discover()["kept"]) == [1]

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")  # nobody there
    found = StoreSource(url, cache).discover()
    assert list(found["kept"]) == [1]
    verify_files(_manifest(found["kept"][1]), found["kept"][1])
    with pytest.raises(StoreError):
        StoreSource(url, tmp_path / "empty").discover()  # nothing known: a readiness reason


def test_a_version_deleted_from_the_store_leaves_the_cache(store, tiny_repository, tmp_path):
    url = f"s3://{BUCKET}/deleted"
    publish_copy(tiny_repository / "tiny-gru" / "1", url, "gone")
    publish_copy(tiny_repository / "tiny-gru" / "1", url, "gone")
    source = StoreSource(url, tmp_path)
    folder = source.discover()["gone"][1]
    objects = ObjectStore(url)
    for item in list(objects.list("gone/1")):
        objects.delete(item.key)
    assert list(source.discover()["gone"]) == [2]
    assert not folder.exists()


def test_settings_keep_an_object_store_url_and_refuse_an_unknown_scheme():
    assert Settings(model_repository="s3://bucket/some/prefix").model_repository == (
        "s3://bucket/some/prefix"
    )
    assert Settings(model_repository="models").model_repository == Path("models")
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        Settings(model_repository="gs://bucket/prefix")


def _manifest(folder: Path):
    from contract.manifest import Manifest

    return Manifest.read(folder)
