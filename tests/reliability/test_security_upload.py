"""Issue 13, security 2 and 5: what ``raysweep submit`` would upload, and the auth warning.

The packaging function is tested without a cluster: a project (a git checkout, and a plain
directory) with every kind of secret planted in it, then the staged directory Ray would
upload is searched for them by name and by content.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from raysweep.cli import main
from raysweep.errors import ConfigError
from raysweep.sweep import jobs
from raysweep.sweep.local_ray import warn_if_auth_disabled
from raysweep.sweep.packaging import check_root, plan_upload, secret_reason, stage

PEM = ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
       "-----END OPENSSH PRIVATE KEY-----\n")
RSA = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n"
SERVICE_ACCOUNT = json.dumps({"type": "service_account", "project_id": "p",
                              "private_key_id": "k", "client_email": "x@p.iam"}, indent=2)
CANARY = "CANARY-7f3a"

#: The nine kinds of the issue, each as a path and content (every one carries the canary).
PLANTED = {
    ".env": f"MLFLOW_TRACKING_PASSWORD={CANARY}\n",
    ".ssh/id_ed25519": PEM + CANARY,
    ".aws/credentials": f"[default]\naws_secret_access_key = {CANARY}\n",
    ".netrc": f"machine mlflow.example.org login u password {CANARY}\n",
    ".git-credentials": f"https://u:{CANARY}@github.com\n",
    "deploy/key_for_ci": RSA + CANARY,               # a private key under an innocent name
    "certs/server.pem": RSA + CANARY,
    ".docker/config.json": json.dumps({"auths": {"r": {"auth": CANARY}}}),
    "conf/gcp.json": SERVICE_ACCOUNT.replace('"k"', f'"{CANARY}"'),  # found by its content
}
NEEDED = {"raysweep/__init__.py": "", "raysweep/cli.py": "print('hi')\n",
          "spaces/sweep.yaml": "name: s\n", "README.md": "# project\n"}


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "HOME": str(root),
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
                        "PATH": "/usr/bin:/bin"})


def _uploaded(plan) -> dict[str, bytes]:
    staged = stage(plan)
    try:
        return {p.relative_to(staged).as_posix(): p.read_bytes()
                for p in staged.rglob("*") if p.is_file()}
    finally:
        shutil.rmtree(staged)


@pytest.mark.parametrize("tracked_secrets", [False, True])
def test_no_planted_secret_is_uploaded_from_a_checkout(tmp_path: Path,
                                                       tracked_secrets: bool) -> None:
    root = tmp_path / "proj"
    _write(root, {**NEEDED, **PLANTED})
    _git(root, "init", "-q")
    # Even secrets committed by mistake (git add -f) stay home; untracked ones never go.
    _git(root, "add", "-f", *(list(NEEDED) + (list(PLANTED) if tracked_secrets else [])))
    plan = plan_upload(root, ["spaces/sweep.yaml"])
    files = _uploaded(plan)
    assert set(files) == set(NEEDED), sorted(files)
    assert not any(CANARY.encode() in data for data in files.values())
    if tracked_secrets:
        assert {p for p, _ in plan.secrets} == set(PLANTED)
    assert plan.source == "git" and plan.total_bytes == sum(len(v) for v in files.values())


def test_outside_a_checkout_only_the_package_and_the_spec_go(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import raysweep

    root = tmp_path / "proj"
    _write(root, {**PLANTED, "spaces/sweep.yaml": "name: s\n", "notes.txt": "mine\n"})
    pkg = root / "raysweep"
    shutil.copytree(Path(raysweep.__file__).parent, pkg,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / ".env").write_text(f"X={CANARY}\n")  # planted inside the package too
    monkeypatch.setattr(raysweep, "__file__", str(pkg / "__init__.py"))
    monkeypatch.setattr("raysweep.sweep.packaging._git_files", lambda _root: None)
    plan = plan_upload(root, ["spaces/sweep.yaml"])
    files = _uploaded(plan)
    assert plan.source == "package"
    assert "spaces/sweep.yaml" in files and "raysweep/sweep/packaging.py" in files
    assert "notes.txt" not in files and "raysweep/.env" not in files
    assert not any(CANARY.encode() in data for data in files.values())


@pytest.mark.parametrize("rel,content,secret", [
    ("id_rsa", "", True), ("id_rsa.pub", "ssh-rsa AAAA", False), ("x/.env.production", "", True),
    ("notes/key.txt", RSA, True), ("sa.json", SERVICE_ACCOUNT, True),
    ("search_spaces/ssd.yaml", "name: ssd\n", False), ("docs/keys.md", "public keys\n", False),
])
def test_secret_reason(tmp_path: Path, rel: str, content: str, secret: bool) -> None:
    path = tmp_path / "f"
    path.write_text(content)
    assert (secret_reason(rel, path) is not None) is secret


def test_home_directories_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home" / "alice"
    (home / "project").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(ConfigError, match="home directory"):
        check_root(home)
    with pytest.raises(ConfigError, match="home directory"):
        check_root(home.parent)  # like /home: it holds everyone's
    with pytest.raises(ConfigError, match="file system root"):
        check_root(Path("/"))
    check_root(home / "project")  # a project inside a home is fine


def test_submit_from_home_exits_2_with_one_line(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path.home())
    assert main(["submit", "sweep.yaml", "--working-dir", str(Path.home()), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("raysweep: error:") and "\n" not in err and "home directory" in err


def test_dry_run_shows_size_and_file_count(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "proj"
    _write(root, {**NEEDED, **PLANTED})
    _git(root, "init", "-q")
    _git(root, "add", "-f", *NEEDED)
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["submit", "spaces/sweep.yaml", "--working-dir", str(root), "--dry-run"]) == 0
    upload = json.loads(capsys.readouterr().out)["upload"]
    assert upload["files"] == len(NEEDED) and upload["bytes"] > 0
    assert upload["source"] == "git" and upload["left_out_as_credentials"] == []
    assert "uploading 4 files" in plan_upload(root, ["spaces/sweep.yaml"]).describe()


def test_the_staged_directory_replaces_the_working_dir_and_is_removed(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    _write(root, {**NEEDED, **PLANTED})
    _git(root, "init", "-q")
    _git(root, "add", "-f", *NEEDED)
    plan = plan_upload(root)
    renv = jobs.runtime_env_for(root, warn=False)
    with jobs.staged_upload(renv, plan) as staged_env:
        staged = Path(staged_env["working_dir"])
        assert staged != root and not (staged / ".env").exists()
        assert (staged / "raysweep" / "cli.py").is_file()
    assert not staged.exists()


@pytest.mark.parametrize("mode,warned", [("disabled", True), ("DISABLED", True),
                                         ("token", False), (None, False)])
def test_auth_disabled_warns_in_one_line(mode: str | None, warned: bool,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    env = {} if mode is None else {"RAY_AUTH_MODE": mode}
    assert warn_if_auth_disabled(env) is warned
    err = capsys.readouterr().err
    if warned:
        assert err.count("\n") == 1 and "unauthenticated" in err
    else:
        assert err == ""


def test_submit_warns_when_auth_is_disabled(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "proj"
    _write(root, NEEDED)
    monkeypatch.chdir(root)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _git(root, "init", "-q")
    _git(root, "add", "-f", *NEEDED)
    assert main(["submit", "spaces/sweep.yaml", "--working-dir", str(root), "--dry-run"]) == 0
    assert "RAY_AUTH_MODE=disabled" in capsys.readouterr().err


def test_run_warns_when_auth_is_disabled(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    # `raysweep run` and `resume` start or join Ray through init_local_ray; Ray itself is
    # replaced by a stub here (the warning comes before ray.init).
    import ray

    from raysweep.sweep import local_ray

    calls: list[dict] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw) or "ctx")
    monkeypatch.setattr(local_ray, "_refresh_ray_auth_cache", lambda: None)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert local_ray.init_local_ray(num_cpus=1) == "ctx"
    assert local_ray.init_local_ray(address="127.0.0.1:6379") == "ctx"
    err = capsys.readouterr().err
    assert err.count("RAY_AUTH_MODE=disabled: the Ray cluster accepts unauthenticated") == 2
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "t" * 64)
    local_ray.init_local_ray(num_cpus=1)
    assert capsys.readouterr().err == "" and len(calls) == 3


@pytest.mark.parametrize("spec", ["prod.env", "mlruns/s.yaml"])
def test_a_spec_that_would_not_be_uploaded_exits_2(spec: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "proj"
    _write(root, {spec: "name: s\n"})  # outside a checkout: the installed package + the spec
    monkeypatch.chdir(root)
    assert main(["submit", spec, "--working-dir", str(root), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("raysweep: error: SPACE") and "would not be uploaded" in err
    assert "\n" not in err
