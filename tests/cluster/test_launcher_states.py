"""The CronJob's launcher (cluster/kuberay/launch_rayjob.py) against a fake Kubernetes API:
every terminal KubeRay state ends the wait with the operator's reason, the benchmark's exit
code comes through, and the RayJob is posted with strict field validation."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

KUBERAY = Path(__file__).resolve().parents[2] / "cluster" / "kuberay"
NAME = "raysweep-regression-abcde"


class _Api(BaseHTTPRequestHandler):
    post_reply: tuple[int, dict[str, Any]] = (201, {"metadata": {"name": NAME}})
    statuses: ClassVar[list[dict[str, Any]]] = []
    posts: ClassVar[list[str]] = []
    gets = 0

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).posts.append(self.path)
        self._send(*type(self).post_reply)

    def do_GET(self) -> None:
        cls = type(self)
        cls.gets += 1
        status = cls.statuses.pop(0) if len(cls.statuses) > 1 else cls.statuses[0]
        self._send(200, {"metadata": {"name": NAME}, "status": status})

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def launcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    configmap = next(d for d in yaml.safe_load_all((KUBERAY / "cronjob-regression.yaml")
                                                   .read_text()) if d and d["kind"] == "ConfigMap")
    manifest = tmp_path / "rayjob.yaml"
    manifest.write_text(configmap["data"]["rayjob.yaml"])
    _Api.posts, _Api.gets = [], 0
    _Api.post_reply = (201, {"metadata": {"name": NAME}})
    server = HTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("KUBE_API_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("KUBE_TOKEN", "t")
    monkeypatch.setenv("POD_NAMESPACE", "nightly")
    monkeypatch.syspath_prepend(str(KUBERAY))
    sys.modules.pop("launch_rayjob", None)
    import launch_rayjob

    def run() -> int:
        return launch_rayjob.main([str(manifest), "--poll", "0.01", "--timeout", "60"])

    try:
        yield run
    finally:
        server.shutdown()


RUNNING = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}


@pytest.mark.parametrize("final,code,says", [
    ({"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}, 0, None),
    # The regression suite exits 3; Ray's message carries it, KubeRay copies the message.
    ({"jobDeploymentStatus": "Complete", "jobStatus": "FAILED", "reason": "AppFailed",
      "message": "Job entrypoint command failed with exit code 3, last available logs: ..."},
     3, "AppFailed"),
    ({"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed",
      "message": "Job entrypoint command failed with exit code 2"}, 2, "exit code 2"),
    ({"jobDeploymentStatus": "Complete", "jobStatus": "STOPPED"}, 1, "STOPPED"),
    ({"jobDeploymentStatus": "Failed", "reason": "DeadlineExceeded",
      "message": "The RayJob has passed the activeDeadlineSeconds."}, 1, "DeadlineExceeded"),
    ({"jobDeploymentStatus": "Failed", "reason": "SubmissionFailed",
      "message": "Job submission has failed."}, 1, "SubmissionFailed"),
    # The operator refused the spec: final at once, with its words, as a config error (2).
    ({"jobDeploymentStatus": "ValidationFailed", "reason": "ValidationFailed",
      "message": "The RayJob spec is invalid: spec.backoffLimit must be >= 0"}, 2,
     "spec.backoffLimit must be >= 0"),
])
def test_terminal_states_end_the_wait(launcher: Any, capsys: pytest.CaptureFixture[str],
                                      final: dict[str, Any], code: int, says: str | None) -> None:
    _Api.statuses = [{}, {"jobDeploymentStatus": "Initializing"}, RUNNING, final, RUNNING]
    assert launcher() == code
    # It stopped at the terminal status (the 4th answer), never reading the one after it.
    assert _Api.gets == 4
    out = capsys.readouterr()
    if says:
        assert says in out.err and final.get("reason", "") in out.err
    assert _Api.posts == ["/apis/ray.io/v1/namespaces/nightly/rayjobs?fieldValidation=Strict"]


def test_strict_rejection_is_a_config_error(launcher: Any,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    _Api.post_reply = (400, {"kind": "Status", "status": "Failure", "reason": "BadRequest",
                             "message": 'RayJob in version "v1" cannot be handled as a RayJob: '
                                        'strict decoding error: unknown field "spec.entrypont"'})
    assert launcher() == 2
    err = capsys.readouterr().err
    assert 'unknown field "spec.entrypont"' in err and "HTTP 400" in err
    assert len(err.strip().splitlines()) == 1
    assert _Api.gets == 0
