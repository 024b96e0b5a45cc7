"""Deployment files: Kubernetes manifests valid against the API schemas, a fleet that stays up
(autoscaling on queue depth, disruption budget, spread, scraping, a guarded Redis shared by every
replica), and the Dockerfiles, manifests and settings consistent with one another. The KServe
files are checked against KServe's and Knative's admission in tests/test_kserve.py.

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

import httpx
import kubernetes_validate
import pytest
import yaml

from service.settings import Settings
from tests.conftest import DEFAULT_MODELS
from tests.live_server import free_port, live_server

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
KSERVE = ROOT / "deploy" / "kserve"
ADAPTER = ROOT / "deploy" / "prometheus-adapter" / "values.yaml"
# The oldest Kubernetes the manifests are written for, and the newest schema on hand.
K8S_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
# `rnnserve serve` drains requests in flight for up to this long after SIGTERM (service/serve.py).
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
    assert not {"models", "service", "cli", "README.md", "pyproject.toml"} & ignored


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
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= (
        manifests().keys()
    )
    assert {"StatefulSet", "Service", "NetworkPolicy"} <= manifests("rnnserve-redis").keys()
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


def env_of_container(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def may_run_several(doc: dict) -> bool:
    """A Deployment scaled by the HPA, or an InferenceService whose maxReplicas is not 1."""
    if doc["kind"] == "Deployment":
        return True  # hpa.yaml scales it to 10
    if doc["kind"] == "InferenceService":
        return doc["spec"]["predictor"].get("maxReplicas", 0) != 1
    return False


def test_every_manifest_that_may_run_several_replicas_shares_sessions_through_redis():
    redis = manifests("rnnserve-redis")
    service = redis["Service"]
    (port,) = service["spec"]["ports"]
    (redis_container,) = redis["StatefulSet"]["spec"]["template"]["spec"]["containers"]
    secret = env_of_container(redis_container)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    several = [(path, doc) for path, doc in deploy_documents() if may_run_several(doc)]
    assert {doc["kind"] for _, doc in several} == {"Deployment", "InferenceService"}
    for path, doc in several:
        (container,) = containers_of(doc)
        env = env_of_container(container)
        store = env["RNNSERVE_SESSION_STORE"]["value"]
        host = f"{service['metadata']['name']}:{port['port']}"
        assert store == f"redis://:$(REDIS_PASSWORD)@{host}/0", path.name
        assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == secret, path.name
        names = list(env)  # Kubernetes expands $(VAR) only from variables defined before
        assert names.index("REDIS_PASSWORD") < names.index("RNNSERVE_SESSION_STORE"), path.name
        expanded = store.replace("$(REDIS_PASSWORD)", "s3cret")
        assert Settings(session_store=expanded).session_store == expanded
        labels = (
            doc["spec"]["template"]["metadata"]["labels"]
            if doc["kind"] == "Deployment"
            else doc["spec"]["predictor"]["labels"]
        )
        assert labels["app.kubernetes.io/part-of"] == "rnnserve", f"{path.name}: Redis refuses it"


def test_redis_is_a_statefulset_with_a_volume_a_password_and_a_network_policy():
    redis, server = manifests("rnnserve-redis"), manifests()
    assert "Deployment" not in redis
    stateful = redis["StatefulSet"]["spec"]
    pod = stateful["template"]
    assert redis["Service"]["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert not server["Service"]["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    (claim,) = stateful["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    args = container["args"]
    assert mounts[claim["metadata"]["name"]] == args[args.index("--dir") + 1]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    env = env_of_container(container)
    assert env["REDISCLI_AUTH"]["valueFrom"] == env["REDIS_PASSWORD"]["valueFrom"]  # the probe
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    policy = redis["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (rule,) = policy["ingress"]
    (source,) = rule["from"]
    assert source["podSelector"]["matchLabels"] == {"app.kubernetes.io/part-of": "rnnserve"}
    assert [p["port"] for p in rule["ports"]] == [p["name"] for p in container["ports"]]


def test_the_disruption_budget_takes_one_replica_at_a_time():
    pdb = manifests()["PodDisruptionBudget"]["spec"]
    assert pdb["maxUnavailable"] == 1 and "minAvailable" not in pdb


def test_replicas_spread_over_nodes_and_zones():
    pod = manifests()["Deployment"]["spec"]["template"]
    spread = {c["topologyKey"]: c for c in pod["spec"]["topologySpreadConstraints"]}
    assert set(spread) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for constraint in spread.values():
        assert constraint["maxSkew"] == 1
        assert (
            constraint["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        )


def test_prometheus_scrapes_the_http_port_of_every_pod():
    pod = manifests()["Deployment"]["spec"]["template"]
    annotations = pod["metadata"]["annotations"]
    ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["http"]
    assert annotations["prometheus.io/path"] == "/metrics"
    runtime = documents(KSERVE / "clusterservingruntime.yaml")[0]["spec"]
    assert runtime["annotations"]["prometheus.kserve.io/port"] == "8080"
    assert "--http_port=8080" in runtime["containers"][0]["args"]


def test_the_autoscaler_scales_on_queue_depth_served_by_the_adapter_rule():
    hpa = manifests()["HorizontalPodAutoscaler"]["spec"]
    (pods,) = [m["pods"] for m in hpa["metrics"] if m["type"] == "Pods"]
    (rule,) = yaml.safe_load(ADAPTER.read_text())["rules"]["custom"]
    assert pods["metric"]["name"] == rule["name"]["as"]
    assert re.match(rule["name"]["matches"], rule["seriesQuery"].split("{")[0])
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    assert pods["target"]["type"] == "AverageValue"
    queue = Settings().batching.max_queue_size
    assert 0 < float(pods["target"]["averageValue"]) < queue, "scale before requests are refused"
    assert any(m["type"] == "Resource" for m in hpa["metrics"]), "CPU as the backstop"


def test_images_name_their_registry_and_the_release():
    """A bare `rnnserve:0.1.0` resolves on no cluster: every image names its registry, and
    the rnnserve image's tag is the project's version (README.md says how to pin a digest)."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    reference = re.compile(
        r"^[a-z0-9.-]+\.[a-z]+(:\d+)?/[a-z0-9._/-]+(:[\w.-]+)?(@sha256:[0-9a-f]{64})?$"
    )
    for path, doc in deploy_documents():
        for container in containers_of(doc):
            if "image" not in container:
                continue  # a model on a runtime: the runtime's image
            image = container["image"]
            assert reference.match(image), f"{path.name}: {image}"
            if "/rnnserve:" in image:
                assert image.split(":")[-1] == version, f"{path.name}: {image}"
    assert "@sha256:" in (ROOT / "README.md").read_text()


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
    pdb_selector = found["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
    assert pdb_selector.items() <= pod_labels.items()


# --- settings in manifests and images -------------------------------------------------------


def containers_of(doc: dict) -> list[dict]:
    """The containers of a Deployment, StatefulSet, InferenceService or serving runtime."""
    spec = doc["spec"]
    if "template" in spec:
        return spec["template"]["spec"]["containers"]
    if "predictor" in spec:
        predictor = spec["predictor"]
        return predictor.get("containers") or [predictor["model"]]
    return spec["containers"]


WORKLOADS = {"Deployment", "StatefulSet", "InferenceService", "ClusterServingRuntime"}


def deploy_documents() -> list[tuple[Path, dict]]:
    """Every document that runs containers, under deploy/kubernetes and deploy/kserve."""
    paths = sorted(KUBERNETES.glob("*.yaml")) + sorted(KSERVE.glob("*.yaml"))
    return [(path, doc) for path in paths for doc in documents(path) if doc["kind"] in WORKLOADS]


def rnnserve_variables() -> list[tuple[str, str, str]]:
    found = []
    for path, doc in deploy_documents():
        for container in containers_of(doc):
            found += [
                (path.name, e["name"], e["value"]) for e in container.get("env", []) if "value" in e
            ]
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


def test_the_adapter_rules_series_is_on_the_servers_metrics(server):
    (rule,) = yaml.safe_load(ADAPTER.read_text())["rules"]["custom"]
    name = rule["seriesQuery"].split("{")[0]
    lines = httpx.get(f"{server}/metrics").text.splitlines()
    assert f"# TYPE {name} gauge" in lines
    assert any(line.startswith(name + "{") for line in lines)
