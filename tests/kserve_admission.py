"""What a cluster's admission does with deploy/kserve, in Python: KServe's CRD schemas (kept in
tests/data/kserve, from kserve/kserve config/crd/full) and the rules of KServe's and Knative's
webhooks, each function naming where its rule is defined.

Sources read: kserve/kserve at aaac4e294dae2c7b1aa1886447793f3aa1c30912 (v0.20) and
knative/serving at 98e5ef90aa7033797aa0a61ef97f3ff7e49a3944, with Knative's default feature
flags (pkg/apis/config/features.go, defaultFeaturesConfig). Each check returns the reasons
it refuses, so a test can show both that the files pass and that the rule bites.
"""

from __future__ import annotations

import functools
import gzip
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

DATA = Path(__file__).resolve().parent / "data" / "kserve"
KSERVE_RUNTIMES = sorted((DATA / "runtimes").glob("*.yaml"))
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
AUTOSCALER_CLASS = "serving.kserve.io/autoscalerClass"


# --- KServe's CRD schemas -------------------------------------------------------------------


@functools.cache
def crd_schema(kind: str, version: str) -> dict[str, Any]:
    """The openAPIV3Schema of one version of a KServe CRD, made strict: the API server with
    field validation Strict (kubectl's default since 1.27) refuses unknown fields, where the
    schema does not preserve them."""
    file = {
        "InferenceService": "inferenceservices",
        "ClusterServingRuntime": "clusterservingruntimes",
    }
    with gzip.open(DATA / f"serving.kserve.io_{file[kind]}.yaml.gz", "rt") as f:
        crd = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return _strict(served["schema"]["openAPIV3Schema"])


def _strict(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


def schema_errors(doc: dict[str, Any]) -> list[str]:
    """Where a document breaks its KServe CRD's schema (metadata as the API server sees it)."""
    schema = crd_schema(doc["kind"], doc["apiVersion"].split("/")[1])
    body = {k: v for k, v in doc.items() if k != "metadata"}
    validator = jsonschema.Draft7Validator({**schema, "properties": {**schema["properties"]}})
    return [
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors({**body, "metadata": {}})
    ]


# --- KServe's InferenceService webhook --------------------------------------------------------

ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
AUTOSCALER_CLASSES = {"hpa", "external", "keda", "none"}
BLOCKED_ENV = {"PYTHONPATH"}
KPA_METRICS, HPA_METRICS = {"concurrency", "rps"}, {"cpu", "memory"}


def defaulted(isvc: dict[str, Any]) -> dict[str, Any]:
    """KServe's mutating webhook first: the legacy mode names become today's.
    (pkg/apis/serving/v1beta1/inference_service_defaults.go, DefaultInferenceService)"""
    annotations = dict(isvc["metadata"].get("annotations", {}))
    legacy = {"RawDeployment": "Standard", "Serverless": "Knative"}
    if annotations.get(DEPLOYMENT_MODE) in legacy:
        annotations[DEPLOYMENT_MODE] = legacy[annotations[DEPLOYMENT_MODE]]
    return {**isvc, "metadata": {**isvc["metadata"], "annotations": annotations}}


def serverless(isvc: dict[str, Any]) -> bool:
    """Knative mode unless the InferenceService asks for Standard (raw) mode. The cluster's
    default mode is a ConfigMap setting (deploy.defaultDeploymentMode); these files say theirs.
    (pkg/constants/constants.go, ParseDeploymentMode)"""
    mode = defaulted(isvc)["metadata"].get("annotations", {}).get(DEPLOYMENT_MODE, "Knative")
    return mode != "Standard"


def isvc_name_errors(isvc: dict[str, Any]) -> list[str]:
    """(pkg/apis/serving/v1beta1/inference_service_validation.go, validateInferenceServiceName)"""
    name = isvc["metadata"]["name"]
    return [] if ISVC_NAME.match(name) else [f"name {name!r} is not {ISVC_NAME.pattern}"]


def autoscaler_class_errors(isvc: dict[str, Any]) -> list[str]:
    """(inference_service_validation.go, validateInferenceServiceAutoscaler; the classes are
    pkg/constants/constants.go, AutoscalerAllowedClassList)"""
    value = isvc["metadata"].get("annotations", {}).get(AUTOSCALER_CLASS)
    if value is None or value in AUTOSCALER_CLASSES:
        return []
    return [f"[{value}] is not a supported autoscaler class type"]


def autoscaling_errors(isvc: dict[str, Any]) -> list[str]:
    """Standard mode with the hpa class takes cpu or memory; Knative mode (KPA) takes
    concurrency or rps, and no deploymentStrategy.
    (inference_service_validation.go, validateAutoScalingCompExtension,
    validateScalingHPACompExtension, validateScalingKPACompExtension; metric lists in
    pkg/constants/constants.go, AutoscalerAllowedHPAMetricsList, AutoscalerAllowedKPAMetricsList)"""
    isvc = defaulted(isvc)
    annotations = isvc["metadata"].get("annotations", {})
    predictor = isvc["spec"]["predictor"]
    metric, target = predictor.get("scaleMetric"), predictor.get("scaleTarget")
    if not serverless(isvc):
        if annotations.get(AUTOSCALER_CLASS) == "keda" and metric is not None:
            return ["ScaleMetric is not supported for KEDA"]
        if annotations.get(AUTOSCALER_CLASS) != "hpa":
            return []
        metric = metric or "cpu"
        if metric not in HPA_METRICS:
            return [f"[{metric}] is not a supported metric"]
        if target is not None and metric == "cpu" and not 1 <= target <= 100:
            return ["the target utilization percentage should be a [1-100] integer"]
        return []
    if "deploymentStrategy" in predictor:
        return ["customizing deploymentStrategy is only supported for raw deployment mode"]
    metric = metric or "concurrency"
    if metric not in KPA_METRICS:
        return [f"[{metric}] is not a supported metric"]
    if metric == "rps" and target is not None and target < 1:
        return ["the target for rps should be greater than 1"]
    return []


def custom_protocol_errors(isvc: dict[str, Any]) -> list[str]:
    """A custom predictor's PROTOCOL variable is v1 or v2 (grpc-v2 is a runtime's protocol
    version, not a custom predictor's).
    (pkg/apis/serving/v1beta1/predictor_custom.go, CustomPredictor.validateCustomProtocol)"""
    containers = isvc["spec"]["predictor"].get("containers")
    if not containers:
        return []
    for env in containers[0].get("env", []):
        if env["name"] == "PROTOCOL" and env.get("value") not in ("v1", "v2"):
            return [f"invalid protocol {env.get('value')}. Must be one of [v1, v2]"]
    return []


def blocked_env_errors(containers: list[dict[str, Any]]) -> list[str]:
    """(pkg/validation/env_policy.go, ValidateBlockedEnvVars with DefaultBlockedEnvVars; called
    by inference_service_validation.go, validateBlockedEnvVars, and the ServingRuntime webhook)"""
    return [
        f"setting {e['name']} in container {c.get('name', 'kserve-container')!r} is not allowed "
        "for security reasons"
        for c in containers
        for e in c.get("env", [])
        if e["name"] in BLOCKED_ENV
    ]


def one_implementation_errors(isvc: dict[str, Any]) -> list[str]:
    """A predictor is a model (with a runtime) or containers (a custom predictor), not both.
    (pkg/apis/serving/v1beta1/component.go, validateExactlyOneImplementation)"""
    predictor = isvc["spec"]["predictor"]
    found = [k for k in ("model", "containers") if predictor.get(k)]
    return [] if len(found) == 1 else [f"exactly one of model or containers, got {found}"]


def inference_service_errors(isvc: dict[str, Any]) -> list[str]:
    """Everything KServe's validating webhook checks that these files touch.
    (inference_service_validation.go, validateInferenceService)"""
    predictor = isvc["spec"]["predictor"]
    containers = predictor.get("containers", []) + (
        [predictor["model"]] if "model" in predictor else []
    )
    return [
        *isvc_name_errors(isvc),
        *autoscaler_class_errors(isvc),
        *blocked_env_errors(containers),
        *one_implementation_errors(isvc),
        *custom_protocol_errors(isvc),
        *autoscaling_errors(isvc),
    ]


# --- KServe's runtime selection and ServingRuntime webhook ------------------------------------


def runtime_supports(isvc: dict[str, Any], runtime: dict[str, Any]) -> bool:
    """Whether KServe would give the InferenceService's model to this runtime: its format (by
    name, and version if given) among the runtime's formats (only the autoSelect ones unless
    the InferenceService names the runtime), and its protocol version among the runtime's.
    (pkg/apis/serving/v1beta1/predictor_model.go, RuntimeSupportsModel and
    getServingRuntimeSupportedModelFormatLabelSet; pkg/apis/serving/v1alpha1/
    servingruntime_types.go, IsProtocolVersionSupported)"""
    model = isvc["spec"]["predictor"]["model"]
    named = "runtime" in model
    if named and model["runtime"] != runtime["metadata"]["name"]:
        return False
    fmt = model["modelFormat"]
    wanted = f"{fmt['name']}:{fmt['version']}" if "version" in fmt else fmt["name"]
    labels = set()
    for supported in runtime["spec"]["supportedModelFormats"]:
        if named or supported.get("autoSelect"):
            labels.add(supported["name"])
            if "version" in supported:
                labels.add(f"{supported['name']}:{supported['version']}")
    protocol = model.get("protocolVersion", "v1")
    return wanted in labels and protocol in runtime["spec"].get("protocolVersions", ["v1"])


def runtime_priority_errors(new: dict[str, Any], existing: list[dict[str, Any]]) -> list[str]:
    """A format's priority is the same throughout one runtime, and no two runtimes sharing a
    protocol version auto-select one format at the same priority.
    (pkg/webhook/admission/servingruntime/servingruntime_webhook.go,
    validateModelFormatPrioritySame and validateServingRuntimePriority)"""
    errors = []
    priorities: dict[str, Any] = {}
    for fmt in new["spec"]["supportedModelFormats"]:
        if fmt.get("autoSelect"):
            seen = priorities.setdefault(fmt["name"], fmt.get("priority"))
            if None not in (seen, fmt.get("priority")) and seen != fmt.get("priority"):
                errors.append(f"different priorities assigned for the model format {fmt['name']}")
    for other in existing:
        if other["metadata"]["name"] == new["metadata"]["name"]:
            continue
        if not set(other["spec"].get("protocolVersions", [])) & set(
            new["spec"]["protocolVersions"]
        ):
            continue
        for theirs in other["spec"]["supportedModelFormats"]:
            for ours in new["spec"]["supportedModelFormats"]:
                same = theirs["name"].lower() == ours["name"].lower() and theirs.get(
                    "version"
                ) == ours.get("version")
                if (
                    same
                    and theirs.get("autoSelect")
                    and ours.get("autoSelect")
                    and None not in (theirs.get("priority"), ours.get("priority"))
                    and theirs["priority"] == ours["priority"]
                ):
                    errors.append(
                        f"same priority assigned for the model format {ours['name']} in the "
                        f"clusterservingruntimes {other['metadata']['name']}"
                    )
    return errors + blocked_env_errors(new["spec"]["containers"])


@functools.cache
def kserve_runtimes() -> list[dict[str, Any]]:
    """The runtimes KServe ships for the formats and protocols ours shares (config/runtimes)."""
    return [yaml.safe_load(path.read_text()) for path in KSERVE_RUNTIMES]


# --- Knative's Revision webhook (serverless mode) ---------------------------------------------

POD_FIELDS = {  # PodSpecMask's allowed fields with the default feature flags
    "serviceAccountName", "containers", "volumes", "imagePullSecrets", "enableServiceLinks",
    "automountServiceAccountToken",
}  # fmt: skip
CONTAINER_FIELDS = {
    "name", "args", "command", "env", "workingDir", "envFrom", "image", "imagePullPolicy",
    "livenessProbe", "ports", "readinessProbe", "resources", "securityContext", "startupProbe",
    "terminationMessagePath", "terminationMessagePolicy", "volumeMounts",
}  # fmt: skip
SECURITY_FIELDS = {
    "capabilities", "readOnlyRootFilesystem", "runAsUser", "runAsGroup", "runAsNonRoot",
    "allowPrivilegeEscalation", "seccompProfile", "privileged",
}  # fmt: skip
PORT_NAMES = {"h2c", "http1", ""}
RESERVED_PORTS = {8012, 8013, 8022, 9090, 9091, 8008}
RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}
VOLUME_SOURCES = {"secret", "configMap", "projected", "emptyDir"}


def knative_pod_errors(pod: dict[str, Any]) -> list[str]:
    """What Knative's webhook refuses in a Revision's pod, with default feature flags: pod-level
    fields beyond its allowlist (securityContext, terminationGracePeriodSeconds, topology
    spread, affinity... each needs a flag), container fields beyond its list (lifecycle),
    container security settings beyond its list, capabilities other than drop, more than one
    port, a port name other than h2c or http1, a reserved port or variable, a field reference,
    a volume other than secret, configMap, projected or emptyDir.
    (knative/serving pkg/apis/serving/k8s_validation.go: ValidatePodSpec,
    ValidatePodSecurityContext, validateContainersPorts, validateContainerPorts,
    validateContainerPortBasic, validateEnvVar, validate; pkg/apis/serving/fieldmask.go:
    PodSpecMask, PodSecurityContextMask, ContainerMask, SecurityContextMask, CapabilitiesMask,
    EnvVarSourceMask, VolumeSourceMask; pkg/networking/constants.go for the reserved ports)"""
    errors = [f"must not set spec.{field}" for field in sorted(set(pod) - POD_FIELDS)]
    if pod.get("automountServiceAccountToken") is True:
        errors.append("automountServiceAccountToken may only be false")
    ports = [p for c in pod["containers"] for p in c.get("ports", [])]
    if len(ports) > 1:
        errors.append("more than one container port is set")
    for container in pod["containers"]:
        errors += [f"must not set {f}" for f in sorted(set(container) - CONTAINER_FIELDS)]
        security = container.get("securityContext", {})
        errors += [
            f"must not set securityContext.{f}" for f in sorted(set(security) - SECURITY_FIELDS)
        ]
        if security.get("privileged") is True:
            errors.append("privileged may only be false")
        if set(security.get("capabilities", {})) - {"drop"}:
            errors.append("capabilities may only drop")
        for port in container.get("ports", [])[:1]:
            if port.get("name", "") not in PORT_NAMES:
                errors.append(f"Port name {port['name']} is not allowed")
            if port["containerPort"] in RESERVED_PORTS:
                errors.append(f"{port['containerPort']} is a reserved port")
            if port.get("protocol", "TCP") != "TCP":
                errors.append(f"invalid protocol {port['protocol']}")
        for env in container.get("env", []):
            if env["name"] in RESERVED_ENV:
                errors.append(f"{env['name']!r} is a reserved environment variable")
            if set(env.get("valueFrom", {})) - {"secretKeyRef", "configMapKeyRef"}:
                errors.append(f"{env['name']}: valueFrom may only name a secret or config map")
    for volume in pod.get("volumes", []):
        if not set(volume) - {"name"} <= VOLUME_SOURCES:
            errors.append(f"volume {volume['name']!r}: only {sorted(VOLUME_SOURCES)} are allowed")
    return errors


def knative_probe_errors(container: dict[str, Any]) -> list[str]:
    """A probe has one handler; an httpGet or tcpSocket port given by name is the serving
    port's name. (k8s_validation.go, validateProbe and validateReadinessProbe)"""
    errors = []
    port_name = (container.get("ports") or [{}])[0].get("name") or "http"
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(kind)
        if probe is None:
            continue
        handlers = [h for h in ("httpGet", "tcpSocket", "exec", "grpc") if h in probe]
        if len(handlers) != 1:
            errors.append(f"{kind}: expected exactly one of httpGet, tcpSocket, exec, grpc")
        for handler in ("httpGet", "tcpSocket"):
            port = probe.get(handler, {}).get("port")
            if isinstance(port, str) and port != port_name:
                errors.append(f"{kind}: Probe port must match container port")
    return errors


PREDICTOR_COMPONENT_FIELDS = {  # KServe's ComponentExtensionSpec, beside the PodSpec
    "minReplicas", "maxReplicas", "scaleTarget", "scaleMetric", "scaleMetricType",
    "containerConcurrency", "timeout", "canaryTrafficPercent", "logger", "batcher", "labels",
    "annotations", "deploymentStrategy", "autoScaling", "model", "workerSpec",
}  # fmt: skip


def predictor_pod(isvc: dict[str, Any], runtime: dict[str, Any] | None = None) -> dict[str, Any]:
    """The pod KServe asks Knative (or a Deployment) for: the predictor's PodSpec part, and for
    a model on a runtime, the runtime's container with the model's fields over it.
    (pkg/controller/v1beta1/inferenceservice/utils/utils.go, MergeRuntimeContainers and
    MergePodSpec: the model's env is merged into the runtime container's by name)"""
    predictor = isvc["spec"]["predictor"]
    pod = {k: v for k, v in predictor.items() if k not in PREDICTOR_COMPONENT_FIELDS}
    if runtime is not None:
        model = predictor["model"]
        (container,) = runtime["spec"]["containers"]
        merged = dict(container)
        merged["env"] = [*container.get("env", []), *model.get("env", [])]
        pod["containers"] = [merged]
        if runtime["spec"].get("volumes"):
            pod["volumes"] = runtime["spec"]["volumes"]
    return pod
