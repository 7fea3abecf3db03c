"""Create a RayJob from a manifest and wait for it: the body of the regression CronJob.

    python launch_rayjob.py RAYJOB.yaml [--timeout SECONDS] [--poll SECONDS]

Runs inside the cluster with the pod's service account (it needs create/get on rayjobs);
talks to the Kubernetes API with the standard library only. The manifest should use
``metadata.generateName`` so each run gets a fresh RayJob. The process lives until the RayJob
finishes, so the CronJob's ``concurrencyPolicy: Forbid`` really keeps two regression runs
from overlapping.

The RayJob is posted with strict field validation (``fieldValidation=Strict``: a misspelt or
unknown field is an error, not silently dropped). Every terminal KubeRay state ends the wait
(``Complete``, ``Failed``, ``ValidationFailed``) and the operator's reason and message are
printed. Exit status: 0 when the Ray job SUCCEEDED; the job's own exit code when its
entrypoint failed (3 for a benchmark regression, as ``raysweep bench run`` exits); 2 when the
manifest or the RayJob is invalid (refused by the API server or ``ValidationFailed``); 1 for
any other failure (submission failed, deadline exceeded, stopped); 124 on timeout.

``KUBE_API_URL`` (and optionally ``KUBE_TOKEN``) point it at another API server, for tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
GROUP_VERSION = "ray.io/v1"
# KubeRay's terminal jobDeploymentStatus values (v1.6 through master). ValidationFailed is not
# in KubeRay's own IsJobDeploymentTerminal, but nothing moves a RayJob out of it: waiting on
# it would only run into the timeout.
TERMINAL_DEPLOYMENT = {"Complete", "Failed", "ValidationFailed"}
# Ray's JobInfo.message for a failed entrypoint, which KubeRay copies to status.message.
_EXIT_CODE = re.compile(r"failed with exit code (\d+)")


def _api() -> tuple[str, dict[str, str], ssl.SSLContext | None]:
    url = os.environ.get("KUBE_API_URL")
    token = os.environ.get("KUBE_TOKEN")
    ctx = None
    if url is None:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        url = f"https://{host}:{port}"
        token = token or (SA_DIR / "token").read_text().strip()
        ctx = ssl.create_default_context(cafile=str(SA_DIR / "ca.crt"))
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return url.rstrip("/"), headers, ctx


def _namespace(manifest: dict[str, Any]) -> str:
    ns = manifest.get("metadata", {}).get("namespace") or os.environ.get("POD_NAMESPACE")
    if not ns and (SA_DIR / "namespace").is_file():
        ns = (SA_DIR / "namespace").read_text().strip()
    return ns or "default"


def _request(method: str, url: str, headers: dict[str, str], ctx: ssl.SSLContext | None,
             body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:  # noqa: S310
        return json.loads(resp.read().decode() or "{}")


def load_manifest(path: str) -> dict[str, Any]:
    import yaml  # in the raysweep image

    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    jobs = [d for d in docs if d.get("kind") == "RayJob"]
    if len(jobs) != 1 or jobs[0].get("apiVersion") != GROUP_VERSION:
        raise ValueError(f"{path}: expected exactly one RayJob ({GROUP_VERSION}), found "
                         f"{[d.get('kind') for d in docs]}")
    meta = jobs[0].setdefault("metadata", {})
    if not meta.get("name") and not meta.get("generateName"):
        raise ValueError(f"{path}: the RayJob needs metadata.generateName (or name)")
    return jobs[0]


def _api_message(exc: urllib.error.HTTPError) -> str:
    """The API server's one-line reason (its Status object's ``message``), else the body."""
    body = exc.read().decode(errors="replace")
    try:
        return str(json.loads(body).get("message") or body)[:1000]
    except ValueError:
        return body[:1000]


def exit_status(status: dict[str, Any]) -> int:
    """The launcher's exit status for a RayJob in a terminal deployment state."""
    deployment, job = status.get("jobDeploymentStatus"), status.get("jobStatus")
    if deployment == "ValidationFailed":
        return 2
    if job == "SUCCEEDED" and deployment == "Complete":
        return 0
    match = _EXIT_CODE.search(status.get("message") or "")
    if job == "FAILED" and match and 0 < int(match.group(1)) < 256:
        return int(match.group(1))
    return 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest")
    ap.add_argument("--timeout", type=float, default=12 * 3600, help="seconds to wait")
    ap.add_argument("--poll", type=float, default=30.0, help="seconds between status checks")
    args = ap.parse_args(argv)
    try:
        manifest = load_manifest(args.manifest)
    except (OSError, ValueError) as exc:
        print(f"launch_rayjob: error: {exc}", file=sys.stderr)
        return 2
    base, headers, ctx = _api()
    ns = _namespace(manifest)
    collection = f"{base}/apis/{GROUP_VERSION}/namespaces/{ns}/rayjobs"
    try:
        created = _request("POST", f"{collection}?fieldValidation=Strict", headers, ctx, manifest)
    except urllib.error.HTTPError as exc:
        # 400/422: the API server (strict validation, the CRD's schema) refused the RayJob.
        print(f"launch_rayjob: error: creating the RayJob from {args.manifest} in {ns}: "
              f"HTTP {exc.code}: {_api_message(exc)}", file=sys.stderr)
        return 2 if exc.code in (400, 422) else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"launch_rayjob: error: the Kubernetes API is unreachable: {exc}", file=sys.stderr)
        return 1
    name = created["metadata"]["name"]
    print(f"launch_rayjob: created rayjob/{name} in {ns}", flush=True)
    deadline = time.monotonic() + args.timeout
    last = None
    while True:
        try:
            status = _request("GET", f"{collection}/{name}", headers, ctx).get("status") or {}
        except (urllib.error.URLError, OSError) as exc:  # API hiccup: keep waiting
            print(f"launch_rayjob: status of {name}: {exc}", file=sys.stderr, flush=True)
            status = {}
        state = (status.get("jobDeploymentStatus"), status.get("jobStatus"))
        if state != last and any(state):
            print(f"launch_rayjob: {name}: deployment={state[0]} job={state[1]}", flush=True)
            last = state
        if state[0] in TERMINAL_DEPLOYMENT:
            code = exit_status(status)
            line = f"launch_rayjob: {name} finished: deployment={state[0]} job={state[1]}"
            if code != 0:  # the operator's own words: why it failed
                line += (f"; reason={status.get('reason') or 'none given'}: "
                         f"{status.get('message') or 'no message'}")
            print(line + f"; exit {code}", file=sys.stderr if code else sys.stdout, flush=True)
            return code
        if time.monotonic() > deadline:
            print(f"launch_rayjob: {name} still running after {args.timeout:.0f}s; giving up "
                  f"(the RayJob's activeDeadlineSeconds stops it)", file=sys.stderr)
            return 124
        time.sleep(args.poll)


if __name__ == "__main__":
    sys.exit(main())
