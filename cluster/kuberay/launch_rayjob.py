"""Create a RayJob from a manifest and wait for it: the body of the regression CronJob.

    python launch_rayjob.py RAYJOB.yaml [--timeout SECONDS] [--poll SECONDS]

Runs inside the cluster with the pod's service account (it needs create/get on rayjobs);
talks to the Kubernetes API with the standard library only. The manifest should use
``metadata.generateName`` so each run gets a fresh RayJob. The process lives until the RayJob
finishes, so the CronJob's ``concurrencyPolicy: Forbid`` really keeps two regression runs
from overlapping. Exit status: 0 when the Ray job SUCCEEDED, 1 when it failed or was stopped,
2 on a bad manifest, 124 on timeout.

``KUBE_API_URL`` (and optionally ``KUBE_TOKEN``) point it at another API server, for tests.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
GROUP_VERSION = "ray.io/v1"
TERMINAL_DEPLOYMENT = {"Complete", "Failed"}


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
        created = _request("POST", collection, headers, ctx, manifest)
    except urllib.error.HTTPError as exc:
        print(f"launch_rayjob: error: creating the RayJob in {ns}: HTTP {exc.code} "
              f"{exc.read().decode(errors='replace')[:500]}", file=sys.stderr)
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
            ok = state[1] == "SUCCEEDED"
            print(f"launch_rayjob: {name} finished: {state[1]}"
                  + ("" if ok else f" ({status.get('message', 'no message')})"), flush=True)
            return 0 if ok else 1
        if time.monotonic() > deadline:
            print(f"launch_rayjob: {name} still running after {args.timeout:.0f}s; giving up "
                  f"(the RayJob's activeDeadlineSeconds stops it)", file=sys.stderr)
            return 124
        time.sleep(args.poll)


if __name__ == "__main__":
    sys.exit(main())
