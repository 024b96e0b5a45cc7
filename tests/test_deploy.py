"""Deployment files: Kubernetes manifests valid against the API schemas, the KServe example's
structure, and the Dockerfiles, manifests and settings consistent with one another.

No container engine and no cluster: the schemas ship with kubernetes-validate. The last tests
run the image's HEALTHCHECK command and deploy/smoke.py against a real local server.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, Literal

import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field

from service.settings import Settings
from tests.conftest import DEFAULT_MODELS
from tests.live_server import free_port, live_server

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
KSERVE = ROOT / "deploy" / "kserve" / "inferenceservice.yaml"
KSERVE_GRPC = ROOT / "deploy" / "kserve" / "inferenceservice-grpc.yaml"
# The oldest Kubernetes the manifests are written for, and the newest schema on hand.
K8S_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
# `rnnserve serve` drains requests in flight for up to this long after SIGTERM (service/cli.py).
SERVER_DRAIN_S = Settings().graceful_shutdown_s


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def manifests(name: str = "rnnserve") -> dict[str, dict]:
    """The documents of one application (by its app.kubernetes.io/name label), by kind."""
    found = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in documents(path):
            if doc["metadata"]["labels"]["app.kubernetes.io/name"] == name:
                found[doc["kind"]] = doc
    return found


# --- Dockerfiles ----------------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(
        r"\\\n",
        " ",
        "\n".join(ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")),
    )
    result = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def stages(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Instructions of each stage by name (the last one is the default build target)."""
    named: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, rest in instructions(path):
        if keyword == "FROM":
            current = [(keyword, rest)]
            named[rest.split()[-1] if " AS " in rest.upper() else rest] = current
        elif named:
            current.append((keyword, rest))
    return named


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in stage:
        if keyword == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def last(stage: list[tuple[str, str]], keyword: str) -> str:
    return [rest for k, rest in stage if k == keyword][-1]


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


HEALTHCHECK_CMD = exec_form(
    last(list(stages(ROOT / "Dockerfile").values())[-1], "HEALTHCHECK").split("CMD", 1)[1]
)


def test_runtime_image_is_slim_python_without_torch_and_runs_as_a_user():
    named = stages(ROOT / "Dockerfile")
    runtime = list(named.values())[-1]
    assert runtime[0][1].startswith("python:3.11-slim"), "the default target is the runtime"
    text = json.dumps(runtime)
    assert "torch" not in text and "train" not in text
    copied = [rest for keyword, rest in runtime if keyword == "COPY"]
    assert any(rest.split()[-1] == "/models" and "models" in rest.split()[-2] for rest in copied)
    assert not any("gcc" in rest or "build-essential" in rest for _, rest in runtime)
    user = last(runtime, "USER").split(":")
    assert user[0].isdigit() and int(user[0]) >= 1000, "numeric, so runAsNonRoot can check it"
    assert last(runtime, "EXPOSE") == "8000 8001"
    assert exec_form(last(runtime, "ENTRYPOINT"))[:2] == ["rnnserve", "serve"]
    env = env_of(runtime)
    assert env["RNNSERVE_HOST"] == "0.0.0.0"
    assert env["RNNSERVE_MODEL_REPOSITORY"] == "/models"


def test_runtime_images_expose_the_http_and_grpc_ports_they_listen_on():
    for dockerfile in ("Dockerfile", "Dockerfile.gpu"):
        runtime = list(stages(ROOT / dockerfile).values())[-1]
        env = env_of(runtime)
        exposed = set(last(runtime, "EXPOSE").split())
        assert exposed == {env["RNNSERVE_PORT"], env["RNNSERVE_GRPC_PORT"]}, dockerfile


def test_healthcheck_asks_readiness_with_python_not_curl():
    assert HEALTHCHECK_CMD[0] == "python" and "/v2/health/ready" in HEALTHCHECK_CMD[-1]
    assert "curl" not in json.dumps(HEALTHCHECK_CMD)


def test_trainer_stage_installs_the_pinned_torch_from_the_cpu_index():
    trainer = stages(ROOT / "Dockerfile")["trainer"]
    args = dict(rest.split("=", 1) for keyword, rest in trainer if keyword == "ARG")
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert f"torch=={args['TORCH_VERSION']}" in project["optional-dependencies"]["train"]
    assert exec_form(last(trainer, "ENTRYPOINT")) == ["rnnserve"]


def test_gpu_image_uses_cuda_12_cudnn_9_and_onnxruntime_gpu_with_auto_providers():
    dockerfile = ROOT / "Dockerfile.gpu"
    base = next(rest for k, rest in instructions(dockerfile) if k == "ARG" and "CUDA_IMAGE" in rest)
    assert re.fullmatch(r"CUDA_IMAGE=nvidia/cuda:12\.[\d.]+-cudnn-runtime-ubuntu\d\d\.\d\d", base)
    runtime = list(stages(dockerfile).values())[-1]
    env = env_of(runtime)
    assert env["RNNSERVE_PROVIDERS"] == "auto" and env["RNNSERVE_HOST"] == "0.0.0.0"
    assert "onnxruntime-gpu==" in dockerfile.read_text()
    assert exec_form(last(runtime, "ENTRYPOINT"))[:2] == ["rnnserve", "serve"]


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {".venv", ".git", "checkpoints", "data", "bench/results", "test-artifacts"} <= ignored
    assert not {"models", "service", "README.md", "pyproject.toml"} & ignored


# --- Kubernetes -----------------------------------------------------------------------------


def kubernetes_documents() -> list:
    return [
        pytest.param(doc, id=f"{path.name}:{doc['kind']}")
        for path in sorted(KUBERNETES.glob("*.yaml"))
        for doc in documents(path)
    ]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("doc", kubernetes_documents())
def test_manifest_is_valid_against_the_kubernetes_schema(doc, version):
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_expected_kinds_are_there():
    assert {"Deployment", "Service", "HorizontalPodAutoscaler"} <= manifests().keys()
    assert manifests()["HorizontalPodAutoscaler"]["apiVersion"] == "autoscaling/v2"


def test_strict_validation_catches_a_misspelt_field():
    deployment = json.loads(json.dumps(manifests()["Deployment"]))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_deployment_probes_resources_and_security():
    pod = manifests()["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001}
    for probe, path in (
        ("startupProbe", "/v2/health/ready"),
        ("readinessProbe", "/v2/health/ready"),
        ("livenessProbe", "/v2/health/live"),
    ):
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60, "time to warm up"

    resources = container["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}

    image_user = int(last(list(stages(ROOT / "Dockerfile").values())[-1], "USER").split(":")[0])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == image_user
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]

    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    slept = float(re.search(r"sleep\((\d+(?:\.\d+)?)\)", pre_stop[-1]).group(1))
    assert pod["terminationGracePeriodSeconds"] > slept + SERVER_DRAIN_S


def test_replicas_share_sessions_through_the_redis_service():
    redis, server = manifests("rnnserve-redis"), manifests()
    pod = redis["Deployment"]["spec"]["template"]
    selector = redis["Service"]["spec"]["selector"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert not server["Service"]["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (port,) = redis["Service"]["spec"]["ports"]
    (container,) = pod["spec"]["containers"]
    assert port["targetPort"] in {p["name"] for p in container["ports"]}
    env = {
        e["name"]: e.get("value")
        for e in server["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    store = env["RNNSERVE_SESSION_STORE"]
    assert store == f"redis://{redis['Service']['metadata']['name']}:{port['port']}/0"
    assert Settings(session_store=store).session_store == store
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_service_hpa_and_pdb_point_at_the_deployment():
    found = manifests()
    deployment = found["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = found["Service"]["spec"]["selector"]
    assert selector.items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    container_ports = {
        p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert {p["targetPort"] for p in found["Service"]["spec"]["ports"]} <= container_ports
    hpa = found["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    if "PodDisruptionBudget" in found:
        pdb_selector = found["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
        assert pdb_selector.items() <= pod_labels.items()


# --- KServe ---------------------------------------------------------------------------------


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class EnvVar(Strict):
    name: str
    value: str


class ContainerPort(Strict):
    containerPort: int = Field(ge=1, le=65535)
    name: Literal["http1", "h2c"] | None = None  # what Knative accepts
    protocol: Literal["TCP"] = "TCP"


class KServeContainer(Open):
    name: Literal["kserve-container"]
    image: str = Field(min_length=1)
    env: list[EnvVar]
    ports: list[ContainerPort] = Field(min_length=1, max_length=1)


class Predictor(Open):
    """The custom predictor: KServe's component fields plus a PodSpec (checked separately)."""

    containers: list[KServeContainer] = Field(min_length=1)
    minReplicas: int | None = Field(None, ge=0)
    maxReplicas: int | None = Field(None, ge=1)
    scaleMetric: Literal["cpu", "memory", "concurrency", "rps"] | None = None
    scaleTarget: int | None = Field(None, ge=1)
    timeout: int | None = Field(None, ge=1)


class Spec(Strict):
    predictor: Predictor


class Metadata(Open):
    name: str = Field(pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$", max_length=63)


class InferenceService(Strict):
    apiVersion: Literal["serving.kserve.io/v1beta1"]
    kind: Literal["InferenceService"]
    metadata: Metadata
    spec: Spec


# KServe's ComponentExtensionSpec, inlined in the predictor beside the PodSpec.
KSERVE_COMPONENT_FIELDS = {
    "minReplicas",
    "maxReplicas",
    "scaleTarget",
    "scaleMetric",
    "containerConcurrency",
    "timeout",
    "canaryTrafficPercent",
    "logger",
    "batcher",
    "labels",
    "annotations",
    "deploymentStrategy",
}


def kserve(path: Path = KSERVE) -> dict[str, Any]:
    (doc,) = documents(path)
    return doc


def test_inference_service_is_a_custom_predictor_speaking_protocol_v2():
    isvc = InferenceService.model_validate(kserve())
    predictor = isvc.spec.predictor
    container = predictor.containers[0]
    env = {e.name: e.value for e in container.env}
    assert env["PROTOCOL"] == "v2"  # how KServe reads a custom predictor's protocol version
    port = container.ports[0].containerPort
    assert int(env["RNNSERVE_PORT"]) == port
    extra = container.model_extra
    assert extra["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": port}
    assert extra["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": port}
    assert predictor.minReplicas is None or predictor.minReplicas <= predictor.maxReplicas


def test_grpc_inference_service_routes_h2c_to_the_grpc_port_and_probes_grpc_health():
    isvc = InferenceService.model_validate(kserve(KSERVE_GRPC))
    container = isvc.spec.predictor.containers[0]
    env = {e.name: e.value for e in container.env}
    assert env["PROTOCOL"] == "grpc-v2"
    (port,) = container.ports
    assert (port.name, port.containerPort) == ("h2c", int(env["RNNSERVE_GRPC_PORT"]))
    assert int(env["RNNSERVE_PORT"]) != port.containerPort
    extra = container.model_extra
    assert extra["readinessProbe"]["grpc"] == {"port": port.containerPort}
    assert extra["livenessProbe"]["grpc"] == {"port": port.containerPort, "service": "liveness"}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", [KSERVE, KSERVE_GRPC], ids=["http", "grpc"])
def test_inference_service_pod_part_is_a_valid_pod_spec(version, path):
    predictor = kserve(path)["spec"]["predictor"]
    pod_spec = {k: v for k, v in predictor.items() if k not in KSERVE_COMPONENT_FIELDS}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"}, "spec": pod_spec}
    kubernetes_validate.validate(pod, version, strict=True)


def test_inference_service_structure_check_rejects_what_kserve_would():
    wrong = kserve()
    wrong["spec"]["predictor"]["containers"][0].pop("image")
    with pytest.raises(ValueError, match="image"):
        InferenceService.model_validate(wrong)


# --- settings in manifests and images -------------------------------------------------------


def rnnserve_variables() -> list[tuple[str, str, str]]:
    found = []
    deployment = manifests()["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    found += [("deployment", e["name"], e["value"]) for e in deployment["env"]]
    for path in (KSERVE, KSERVE_GRPC):
        kserve_container = kserve(path)["spec"]["predictor"]["containers"][0]
        found += [(path.name, e["name"], e["value"]) for e in kserve_container["env"]]
    for dockerfile in ("Dockerfile", "Dockerfile.gpu"):
        for stage in stages(ROOT / dockerfile).values():
            found += [(dockerfile, k, v) for k, v in env_of(stage).items()]
    return [f for f in found if f[1].startswith("RNNSERVE_")]


@pytest.mark.parametrize(("where", "name", "value"), rnnserve_variables())
def test_every_rnnserve_variable_is_a_setting_with_a_valid_value(where, name, value, monkeypatch):
    field = name.removeprefix("RNNSERVE_").split("__")[0].lower()
    assert field in Settings.model_fields, f"{where}: {name} is no setting"
    monkeypatch.setenv(name, value)
    settings = Settings()
    assert str(getattr(settings, field)) == value or field == "batching"


# --- against a real server ------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    grpc_port = free_port()
    with live_server(DEFAULT_MODELS, grpc_port=grpc_port) as url:
        url.grpc = f"127.0.0.1:{grpc_port}"
        yield url


def test_the_image_healthcheck_command_passes_on_a_ready_server(server):
    port = server.rsplit(":", 1)[1]
    env = {"RNNSERVE_PORT": port, "PATH": ""}
    done = subprocess.run([sys.executable, *HEALTHCHECK_CMD[1:]], env=env, timeout=30)
    assert done.returncode == 0


def test_the_image_healthcheck_command_fails_without_a_server():
    env = {"RNNSERVE_PORT": str(free_port()), "PATH": ""}
    done = subprocess.run(
        [sys.executable, *HEALTHCHECK_CMD[1:]], env=env, timeout=30, capture_output=True
    )
    assert done.returncode != 0


def test_smoke_script_passes_against_a_server_and_itself(server):
    done = subprocess.run(
        [
            sys.executable,
            "deploy/smoke.py",
            server,
            "--reference",
            server,
            "--timeout",
            "30",
            "--grpc",
            server.grpc,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for model in sorted(p.name for p in DEFAULT_MODELS.iterdir() if p.is_dir()):
        assert model in done.stdout
    assert f"grpc {server.grpc}: ServerReady True" in done.stdout
    assert "sst2-lstm v1 over gRPC: ['positive', 'negative'," in done.stdout


def test_smoke_grpc_on_a_python_without_grpc_says_so_in_one_line():
    """The system's python, say: `-S` leaves out site-packages, so grpc cannot be imported."""
    done = subprocess.run(
        [sys.executable, "-S", "deploy/smoke.py", "http://127.0.0.1:9", "--timeout", "1",
         "--grpc", "127.0.0.1:9"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "smoke.py: --grpc needs grpcio and protobuf; run it with the project's python "
        "(.venv/bin/python) or `pip install grpcio protobuf`"
    ]


def outside_make() -> dict[str, str]:
    """The environment without what a `make test` above passes down to a nested make."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}


@pytest.mark.parametrize("target", ["docker", "docker-trainer", "docker-gpu"])
def test_podman_builds_in_dockers_format_so_the_healthcheck_stays(target):
    """podman's default OCI format has no HEALTHCHECK; Docker's does."""

    def build(docker: str) -> str:
        done = subprocess.run(
            ["make", "--no-print-directory", "-n", target, f"DOCKER={docker}"],
            cwd=ROOT, capture_output=True, text=True, check=True, env=outside_make(),
        )  # fmt: skip
        return done.stdout.strip()

    assert build("podman").startswith("podman build --format docker ")
    assert build("/usr/bin/podman").startswith("/usr/bin/podman build --format docker ")
    assert "--format" not in build("docker")
