"""Readiness a fleet can live with: it gates what a replica was asked to serve at start (an
empty or misplaced repository is not ready unless allowed); what fails later is reported and
never takes the replica out of the Service, since every replica shares the repository."""

import shutil

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.conftest import copy_version, wait_ready
from tests.waiting import wait_for


def app_over(repository, **settings):
    return create_app(
        Settings(model_repository=repository, providers="cpu", grpc_port=0, **settings)
    )


def test_an_empty_repository_is_not_ready(tmp_path):
    with TestClient(app_over(tmp_path, repository_poll_s=0)) as client:
        wait_for(lambda: client.app.state.repository.loaded, "the first scan")
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 503
        assert ready.json() == {
            "ready": False,
            "error": f"the model repository {tmp_path} holds no model",
        }


def test_an_empty_repository_is_ready_where_allowed(tmp_path):
    with TestClient(app_over(tmp_path, repository_poll_s=0, allow_empty_repository=True)) as client:
        wait_ready(client)
        assert client.get("/v2/health/ready").json() == {"ready": True}


def test_one_models_folder_given_as_the_repository_is_not_ready_and_says_why(tiny_repository):
    model = tiny_repository / "tiny-lstm"  # <version>/ folders: a model, not a repository
    with TestClient(app_over(model, repository_poll_s=0)) as client:
        wait_for(lambda: client.app.state.repository.loaded, "the first scan")
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 503
        assert "looks like one model's folder" in ready.json()["error"]
        assert "--model_name" in ready.json()["error"]
        assert client.get("/v1/models").json()["models"] == []


def test_one_models_folder_serves_under_the_name_it_is_given(tiny_repository):
    model = tiny_repository / "tiny-gru"
    with TestClient(app_over(model, repository_poll_s=0, model_name="reviews")) as client:
        wait_ready(client)
        answer = client.post("/v1/models/reviews:predict", json={"instances": ["a fine film"]})
        assert answer.status_code == 200
        assert answer.json()["model_name"] == "reviews"
        assert client.get("/v2/models/reviews").json()["name"] == "reviews"


@pytest.fixture
def served(tiny_repository, tmp_path):
    """A replica that became ready on one model, with its repository polled."""
    repository = tmp_path / "models"
    copy_version(tiny_repository / "tiny-lstm" / "1", repository, "good", 1)
    with TestClient(app_over(repository, repository_poll_s=0.05)) as client:
        wait_ready(client)
        yield client, repository


def publish_broken(repository, name, version):
    staging = repository / ".staging"
    staging.mkdir()
    (staging / "manifest.json").write_text("{not json")
    (repository / name).mkdir(exist_ok=True)
    staging.rename(repository / name / str(version))


def test_a_broken_model_published_later_is_reported_but_keeps_the_replica_ready(served):
    client, repository = served
    publish_broken(repository, "broken", 1)
    wait_for(
        lambda: (
            client.get("/v1/models/broken").json().get("status", [{}])[0].get("state") == "failed"
        ),
        "the broken model's load",
    )
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200
    (problem,) = ready.json()["problems"]
    assert problem.startswith("broken version 1 is failed: ValidationError")
    good = client.post("/v1/models/good:predict", json={"instances": ["a fine film"]})
    assert good.status_code == 200
    assert 'rnnserve_model_ready{model="broken",version="1"} 0.0' in client.get("/metrics").text


def test_a_repository_that_becomes_unreadable_later_is_reported_but_keeps_the_replica_ready(
    served,
):
    client, repository = served
    shutil.move(repository, repository.with_name("moved"))
    wait_for(
        lambda: "problems" in client.get("/v2/health/ready").json(), "the failed scan reported"
    )
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200
    assert "the model repository cannot be read" in ready.json()["problems"][0]
    assert client.post("/v1/models/good:predict", json={"instances": ["fine"]}).status_code == 200


def test_a_model_broken_at_start_holds_readiness(tiny_repository, tmp_path):
    """The other side: what the replica was asked to serve at start must load (strict)."""
    repository = tmp_path / "models"
    copy_version(tiny_repository / "tiny-lstm" / "1", repository, "good", 1)
    publish_broken(repository, "broken", 1)
    with TestClient(app_over(repository, repository_poll_s=0)) as client:
        wait_for(lambda: client.app.state.repository.loaded, "the first scan")
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 503
        assert "broken version 1 is failed" in ready.json()["error"]
