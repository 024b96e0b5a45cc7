"""deploy/kserve against what a KServe cluster does with it: KServe's CRD schemas, KServe's and
Knative's admission rules (tests/kserve_admission.py says where each is defined), KServe's
runtime selection, and the runtime's arguments and /mnt/models layouts on a real server.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from tests import kserve_admission as admission
from tests.live_server import free_port, live_server

ROOT = Path(__file__).resolve().parent.parent
KSERVE = ROOT / "deploy" / "kserve"
ISVCS = sorted(KSERVE.glob("inferenceservice*.yaml"))
RUNTIME_FILE = KSERVE / "clusterservingruntime.yaml"


def load(path: Path) -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return doc


RUNTIME = load(RUNTIME_FILE)


def isvc(name: str) -> dict[str, Any]:
    return copy.deepcopy(load(KSERVE / name))


def runtime_for(doc: dict[str, Any]) -> dict[str, Any] | None:
    return RUNTIME if "model" in doc["spec"]["predictor"] else None


# --- schemas --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [*ISVCS, RUNTIME_FILE], ids=lambda p: p.name)
def test_each_file_is_valid_against_kserves_crd_schema(path):
    assert admission.schema_errors(load(path)) == []


def test_the_schema_check_refuses_a_misspelt_field_and_a_wrong_type():
    doc = isvc("inferenceservice.yaml")
    doc["spec"]["predictor"]["maxReplica"] = doc["spec"]["predictor"].pop("maxReplicas")
    doc["spec"]["predictor"]["minReplicas"] = "one"
    errors = admission.schema_errors(doc)
    assert any("maxReplica" in e for e in errors) and any("'one'" in e for e in errors), errors
    runtime = copy.deepcopy(RUNTIME)
    runtime["spec"]["supportedModelFormats"][0]["autoselect"] = True
    assert any("autoselect" in e for e in admission.schema_errors(runtime))


# --- KServe's InferenceService webhook ------------------------------------------------------


@pytest.mark.parametrize("path", ISVCS, ids=lambda p: p.name)
def test_kserves_webhook_admits_each_inference_service(path):
    assert admission.inference_service_errors(load(path)) == []


def test_a_custom_predictor_says_protocol_v2_for_http_and_grpc():
    """grpc-v2 is refused on a custom predictor (CustomPredictor.validateCustomProtocol)."""
    for name in ("inferenceservice.yaml", "inferenceservice-grpc.yaml"):
        env = {
            e["name"]: e.get("value")
            for e in load(KSERVE / name)["spec"]["predictor"]["containers"][0]["env"]
        }
        assert env["PROTOCOL"] == "v2", name
    wrong = isvc("inferenceservice-grpc.yaml")
    wrong["spec"]["predictor"]["containers"][0]["env"][0] = {"name": "PROTOCOL", "value": "grpc-v2"}
    assert admission.custom_protocol_errors(wrong) == [
        "invalid protocol grpc-v2. Must be one of [v1, v2]"
    ]


def test_cpu_scaling_only_in_raw_mode_and_concurrency_in_serverless():
    """validateAutoScalingCompExtension: KPA (serverless) takes concurrency or rps, the HPA
    class in Standard mode cpu or memory; RawDeployment is defaulted to Standard first."""
    raw = isvc("inferenceservice-grpc.yaml")
    assert raw["metadata"]["annotations"][admission.DEPLOYMENT_MODE] == "RawDeployment"
    assert raw["spec"]["predictor"]["scaleMetric"] == "cpu"
    assert not admission.serverless(raw) and admission.autoscaling_errors(raw) == []
    del raw["metadata"]["annotations"][admission.DEPLOYMENT_MODE]
    assert admission.autoscaling_errors(raw) == ["[cpu] is not a supported metric"]
    for name in ("inferenceservice.yaml", "inferenceservice-bucket.yaml"):
        doc = isvc(name)
        assert (
            admission.serverless(doc) and doc["spec"]["predictor"]["scaleMetric"] == "concurrency"
        )
    raw = isvc("inferenceservice-grpc.yaml")
    raw["spec"]["predictor"]["scaleTarget"] = 150
    assert admission.autoscaling_errors(raw) == [
        "the target utilization percentage should be a [1-100] integer"
    ]


def test_names_autoscaler_classes_blocked_variables_and_one_implementation_are_checked():
    doc = isvc("inferenceservice-bucket.yaml")
    doc["metadata"]["name"] = "Sentiment_1"
    doc["metadata"]["annotations"] = {admission.AUTOSCALER_CLASS: "vpa"}
    doc["spec"]["predictor"]["model"]["env"].append({"name": "PYTHONPATH", "value": "/x"})
    doc["spec"]["predictor"]["containers"] = [{"name": "kserve-container", "image": "x"}]
    errors = admission.inference_service_errors(doc)
    assert len(errors) == 4, errors
    assert "[vpa] is not a supported autoscaler class type" in errors


# --- Knative's webhook (serverless InferenceServices) ---------------------------------------


@pytest.mark.parametrize("path", ISVCS, ids=lambda p: p.name)
def test_knative_admits_each_serverless_pod(path):
    doc = load(path)
    if not admission.serverless(doc):
        pytest.skip("RawDeployment: a Deployment, no Knative Revision")
    pod = admission.predictor_pod(doc, runtime_for(doc))
    assert admission.knative_pod_errors(pod) == []
    for container in pod["containers"]:
        assert admission.knative_probe_errors(container) == []


def test_knative_refuses_pod_level_security_a_second_port_and_lifecycle():
    """What the first InferenceServices had: runAsNonRoot/runAsUser on the pod (a feature flag
    in Knative); and what a raw-mode pod may carry but Knative refuses."""
    pod = admission.predictor_pod(isvc("inferenceservice.yaml"))
    pod["securityContext"] = {"runAsNonRoot": True, "runAsUser": 10001}
    pod["terminationGracePeriodSeconds"] = 45
    container = pod["containers"][0]
    container["ports"].append({"name": "h2c", "containerPort": 9000})
    container["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", "5"]}}}
    container["ports"][0]["name"] = "http"
    assert admission.knative_pod_errors(pod) == [
        "must not set spec.securityContext",
        "must not set spec.terminationGracePeriodSeconds",
        "more than one container port is set",
        "must not set lifecycle",
        "Port name http is not allowed",
    ]


def test_serverless_pods_keep_their_security_settings_on_the_container():
    for path in ISVCS:
        doc = load(path)
        pod = admission.predictor_pod(doc, runtime_for(doc))
        security = pod["containers"][0]["securityContext"]
        non_root = security.get("runAsNonRoot") or pod.get("securityContext", {}).get(
            "runAsNonRoot"
        )
        assert non_root is True, path.name
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}


def test_the_raw_inference_service_carries_http_and_grpc_with_a_grace_period():
    predictor = load(KSERVE / "inferenceservice-grpc.yaml")["spec"]["predictor"]
    (container,) = predictor["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http1": int(env["RNNSERVE_PORT"]), "h2c": int(env["RNNSERVE_GRPC_PORT"])}
    assert container["readinessProbe"]["grpc"] == {"port": ports["h2c"]}
    assert predictor["terminationGracePeriodSeconds"] > 5 + 30  # preStop + the server's drain


# --- the runtime ----------------------------------------------------------------------------


def test_the_runtime_offers_rnnserve_and_onnx_over_v2_and_grpc_on_kserves_ports():
    spec = RUNTIME["spec"]
    formats = {f["name"]: f for f in spec["supportedModelFormats"]}
    assert set(formats) == {"rnnserve", "onnx"} and set(spec["protocolVersions"]) == {
        "v2",
        "grpc-v2",
    }
    args = spec["containers"][0]["args"]
    assert args == [
        "--model_name={{.Name}}",
        "--model_dir=/mnt/models",
        "--http_port=8080",
        "--grpc_port=9000",
    ]


def test_kserve_gives_the_bucket_model_to_this_runtime():
    """RuntimeSupportsModel: the rnnserve format is auto-selected; onnx only when named, so
    Triton keeps onnx by default."""
    bucket = isvc("inferenceservice-bucket.yaml")
    assert admission.runtime_supports(bucket, RUNTIME)
    assert bucket["spec"]["predictor"]["model"]["storageUri"].startswith("s3://")
    onnx = copy.deepcopy(bucket)
    onnx["spec"]["predictor"]["model"]["modelFormat"] = {"name": "onnx"}
    assert not admission.runtime_supports(onnx, RUNTIME)
    onnx["spec"]["predictor"]["model"]["runtime"] = "rnnserve"
    assert admission.runtime_supports(onnx, RUNTIME)
    triton = [
        r for r in admission.kserve_runtimes() if r["metadata"]["name"] == "kserve-tritonserver"
    ]
    onnx["spec"]["predictor"]["model"].pop("runtime")
    assert admission.runtime_supports(onnx, triton[0])


def test_kserves_runtime_webhook_admits_the_runtime_beside_kserves_own():
    assert admission.kserve_runtimes(), "KServe's runtimes are kept in tests/data/kserve"
    assert admission.runtime_priority_errors(RUNTIME, admission.kserve_runtimes()) == []
    greedy = copy.deepcopy(RUNTIME)
    greedy["spec"]["supportedModelFormats"][1].update(autoSelect=True, priority=1)
    errors = admission.runtime_priority_errors(greedy, admission.kserve_runtimes())
    assert errors == [
        "same priority assigned for the model format onnx in the clusterservingruntimes "
        "kserve-tritonserver"
    ]


# --- the runtime's arguments and /mnt/models on a real server --------------------------------


def kserve_args(model_dir: Path, name: str, http_port: int, grpc_port: int) -> list[str]:
    """The runtime's arguments as KServe renders them, on free ports of this machine."""
    args = RUNTIME["spec"]["containers"][0]["args"]
    rendered = [a.replace("{{.Name}}", name).replace("/mnt/models", str(model_dir)) for a in args]
    return [a.replace("=8080", f"={http_port}").replace("=9000", f"={grpc_port}") for a in rendered]


def serve_kserve(model_dir: Path, name: str):
    http_port, grpc_port = free_port(), free_port()
    server = live_server(
        model_dir, port=http_port, args=kserve_args(model_dir, name, http_port, grpc_port)
    )
    return server, f"127.0.0.1:{grpc_port}"


def test_a_repository_root_in_mnt_models_serves_every_model(tiny_repository, tmp_path):
    mnt = tmp_path / "mnt" / "models"
    shutil.copytree(tiny_repository, mnt)
    server, grpc_address = serve_kserve(mnt, "rnnserve")
    with server as url:
        models = {m["name"] for m in httpx.get(f"{url}/v1/models").json()["models"]}
        assert models == {"tiny-lstm", "tiny-gru"}
        answer = infer_text(url, "tiny-gru")
        assert answer["model_name"] == "tiny-gru" and answer["outputs"][0]["data"]
        assert grpc_ready(grpc_address)


def test_one_models_folder_in_mnt_models_is_served_under_the_inference_services_name(
    tiny_repository, tmp_path
):
    mnt = tmp_path / "mnt" / "models"
    shutil.copytree(tiny_repository / "tiny-lstm", mnt)  # <version>/ folders, as exported
    server, grpc_address = serve_kserve(mnt, "sentiment")
    with server as url:
        assert [m["name"] for m in httpx.get(f"{url}/v1/models").json()["models"]] == ["sentiment"]
        assert httpx.get(f"{url}/v2/models/sentiment/ready").status_code == 200
        answer = infer_text(url, "sentiment")
        assert (answer["model_name"], answer["model_version"]) == ("sentiment", "1")
        original = json.loads((tiny_repository / "tiny-lstm" / "1" / "manifest.json").read_text())
        labels = next(o for o in answer["outputs"] if o["name"] == "label")["data"]
        assert set(labels) <= set(original["labels"])
        assert grpc_ready(grpc_address)


def test_a_bare_model_onnx_is_served_as_a_tensor_model_through_v2(tmp_path):
    """KServe's `onnx` format: /mnt/models holds model.onnx and nothing else; the manifest is
    derived from the graph at load. A scikit-learn model, converted as its tutorial does."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    model = LogisticRegression().fit(x, y)
    mnt = tmp_path / "mnt" / "models"
    mnt.mkdir(parents=True)
    onnx_model = to_onnx(model, x[:1], options={id(model): {"zipmap": False}})
    (mnt / "model.onnx").write_bytes(onnx_model.SerializeToString())
    server, _ = serve_kserve(mnt, "iris")
    with server as url:
        metadata = httpx.get(f"{url}/v2/models/iris").json()
        assert metadata["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
        detail = httpx.get(f"{url}/v1/models/iris").json()
        assert detail["versions"] == [1]
        body = {
            "inputs": [
                {"name": "X", "datatype": "FP32", "shape": [5, 4], "data": x[:5].ravel().tolist()}
            ]
        }
        answer = httpx.post(f"{url}/v2/models/iris/infer", json=body).json()
        outputs = {o["name"]: o for o in answer["outputs"]}
        probabilities = np.array(outputs["probabilities"]["data"]).reshape(5, 2)
        np.testing.assert_allclose(probabilities, model.predict_proba(x[:5]), atol=1e-5)
        assert outputs["label"]["data"] == model.predict(x[:5]).tolist()
    assert sorted(p.name for p in mnt.iterdir()) == ["model.onnx"], "nothing written beside it"


def infer_text(url: str, model: str) -> dict[str, Any]:
    body = {
        "inputs": [
            {"name": "text", "datatype": "BYTES", "shape": [2], "data": ["a fine film", "dull"]}
        ]
    }
    response = httpx.post(f"{url}/v2/models/{model}/infer", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def grpc_ready(address: str) -> bool:
    import tritonclient.grpc as triton

    with triton.InferenceServerClient(address) as client:
        return client.is_server_ready()
