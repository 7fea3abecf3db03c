"""``raysweep submit`` and ``raysweep jobs submit|list|status|stop|logs``: the Ray Jobs API."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from raysweep.cli import app
from raysweep.cli._common import print_json, stdout

jobs_app = typer.Typer(help="Jobs on a Ray cluster (Ray Jobs API, dashboard port 8265).",
                       no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")

_ADDRESS_HELP = ("Ray Jobs API URL, http://HEAD:8265 (default: $RAY_API_SERVER_ADDRESS, or "
                 "$RAY_ADDRESS when it is an http URL)")


def _address_option() -> str | None:
    return typer.Option(None, "--address", "-a", help=_ADDRESS_HELP)


def _finish(client, url: str, job_id: str, entrypoint: str, wait: bool,
            json_out: bool) -> None:
    from raysweep._console import info
    from raysweep.sweep.jobs import exit_code, wait_for_job

    if not wait:
        if json_out:
            print_json({"job_id": job_id, "address": url, "entrypoint": entrypoint,
                        "status": "PENDING"})
        else:
            print(job_id)
            info(f"submitted {job_id} to {url}: {entrypoint}\n"
                 f"  logs: raysweep jobs logs {job_id} --address {url} --follow\n"
                 f"  stop: raysweep jobs stop {job_id} --address {url}")
        return
    if not json_out:
        print(job_id, flush=True)
    info(f"submitted {job_id} to {url}; streaming its logs (Ctrl-C detaches, the job goes on)")
    try:
        summary = wait_for_job(client, url, job_id, out=sys.stderr)
    except KeyboardInterrupt:
        info(f"detached; {job_id} keeps running: raysweep jobs stop {job_id} --address {url}")
        raise
    code = exit_code(summary)
    if json_out:
        print_json({"address": url, **summary.to_dict(), "exit_code": code})
    else:
        info(f"job {job_id} {summary.status}"
             + (f" (driver exit code {summary.driver_exit_code})"
                if summary.driver_exit_code not in (None, 0) else ""))
    if code:
        raise typer.Exit(code)


@app.command("submit")
def submit_cmd(
    space: str = typer.Argument(..., help="search-space YAML, inside the working dir"),
    run_args: list[str] = typer.Argument(None, help="more `raysweep run` options, after --"),
    address: str | None = _address_option(),
    wait: bool = typer.Option(False, "--wait", help="stream the logs; exit with the job's status"),
    overrides: list[str] = typer.Option([], "--set", help="key=value passed to `raysweep run`"),
    env: list[str] = typer.Option([], "--env", help="NAME=VALUE for the job (repeatable)"),
    working_dir: Path | None = typer.Option(
        None, "--working-dir", help="directory uploaded to the cluster (default: project root)"),
    submission_id: str | None = typer.Option(None, "--submission-id", help="choose the job id"),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="print the entrypoint and runtime env; submit nothing"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Run a sweep on a Ray cluster: submits `raysweep run SPACE.yaml` as a Ray job.

    Uploaded as the job's working dir: the git-tracked files of the project (or the raysweep
    package and the spec outside a checkout), never credentials (.env, keys, cloud logins) and
    never a home directory; the size and file count are printed first. The job id is printed
    on stdout.
    """
    from raysweep._console import info
    from raysweep.errors import ConfigError
    from raysweep.sweep.jobs import (
        connect,
        normalize_address,
        project_root,
        relative_to_root,
        runtime_env_for,
        staged_upload,
        submit,
        sweep_entrypoint,
    )
    from raysweep.sweep.local_ray import warn_if_auth_disabled
    from raysweep.sweep.packaging import check_root, plan_upload

    warn_if_auth_disabled()
    root = (working_dir or project_root()).resolve()
    check_root(root)  # before anything else is said about the directory
    rel = relative_to_root(space, root)
    entrypoint = sweep_entrypoint(rel, overrides, run_args or [])
    renv = runtime_env_for(root, env)
    plan = plan_upload(root, [rel])
    if rel not in plan.files:  # the job would not find its own spec
        why = dict(plan.secrets).get(rel, "a cache or local store, never uploaded")
        raise ConfigError(f"SPACE {space}: would not be uploaded ({why}); rename or move it")
    metadata = {"raysweep.space": rel, "raysweep.kind": "sweep"}
    if dry_run:
        url = normalize_address(address) if address else None
        print_json({"address": url, "entrypoint": entrypoint, "runtime_env": renv,
                    "upload": plan.to_dict(), "metadata": metadata})
        return
    client, url = connect(address)
    info(plan.describe())
    with staged_upload(renv, plan) as staged_env:
        job_id = submit(client, url, entrypoint, staged_env, submission_id=submission_id,
                        metadata=metadata)
    _finish(client, url, job_id, entrypoint, wait, json_out)


@jobs_app.command("submit")
def jobs_submit_cmd(
    command: list[str] = typer.Argument(..., help="the command to run, after --"),
    address: str | None = _address_option(),
    wait: bool = typer.Option(False, "--wait", help="stream the logs; exit with the job's status"),
    env: list[str] = typer.Option([], "--env", help="NAME=VALUE for the job (repeatable)"),
    working_dir: Path | None = typer.Option(
        None, "--working-dir", help="directory uploaded to the cluster (default: project root)"),
    no_working_dir: bool = typer.Option(False, "--no-working-dir", help="upload nothing"),
    submission_id: str | None = typer.Option(None, "--submission-id", help="choose the job id"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Run any command as a Ray job: `raysweep jobs submit -a URL -- raysweep bench run S.yaml`.

    The working dir is uploaded as `raysweep submit` does it (git-tracked files, no
    credentials, never a home directory)."""
    from raysweep._console import info
    from raysweep.sweep.jobs import (
        connect,
        project_root,
        runtime_env_for,
        staged_upload,
        submit,
    )
    from raysweep.sweep.local_ray import warn_if_auth_disabled
    from raysweep.sweep.packaging import plan_upload

    warn_if_auth_disabled()
    root = None if no_working_dir else (working_dir or project_root()).resolve()
    renv = runtime_env_for(root, env)
    plan = plan_upload(root) if root is not None else None
    entrypoint = shlex.join(command)
    client, url = connect(address)
    if plan is not None:
        info(plan.describe())
    with staged_upload(renv, plan) as staged_env:
        job_id = submit(client, url, entrypoint, staged_env, submission_id=submission_id,
                        metadata={"raysweep.kind": "command"})
    _finish(client, url, job_id, entrypoint, wait, json_out)


@jobs_app.command("list")
def jobs_list_cmd(
    address: str | None = _address_option(),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """The cluster's jobs, oldest first."""
    from rich.table import Table

    from raysweep.sweep.jobs import connect, list_jobs

    client, url = connect(address)
    rows = list_jobs(client, url)
    if json_out:
        print_json([r.to_dict() for r in rows])
        return
    table = Table(header_style="bold", title=f"jobs on {url}")
    for col in ("job id", "status", "exit", "started", "ended", "entrypoint"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.job_id, r.status,
                      "" if r.driver_exit_code is None else str(r.driver_exit_code),
                      r.start_time or "", r.end_time or "",
                      r.entrypoint if len(r.entrypoint) <= 70 else r.entrypoint[:67] + "...")
    stdout.print(table)


@jobs_app.command("status")
def jobs_status_cmd(
    job_id: str = typer.Argument(..., help="submission id (raysubmit_...)"),
    address: str | None = _address_option(),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """One job's status, message and driver exit code."""
    from raysweep.sweep.jobs import connect, job_info

    client, url = connect(address)
    summary = job_info(client, url, job_id)
    if json_out:
        print_json(summary.to_dict())
        return
    print(f"{summary.job_id}\t{summary.status}\t{summary.message or ''}")


@jobs_app.command("stop")
def jobs_stop_cmd(
    job_id: str = typer.Argument(..., help="submission id (raysubmit_...)"),
    address: str | None = _address_option(),
    wait: bool = typer.Option(False, "--wait", help="wait until the job has stopped"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Stop a running job (SIGTERM to its driver, then SIGKILL)."""
    from raysweep._console import info
    from raysweep.sweep.jobs import connect, job_info, stop_job, wait_for_job

    client, url = connect(address)
    stopped = stop_job(client, url, job_id)
    summary = (wait_for_job(client, url, job_id, quiet=True) if wait
               else job_info(client, url, job_id))
    if json_out:
        print_json({"job_id": job_id, "stop_requested": stopped, "status": summary.status})
        return
    info(f"{job_id}: {'stop requested' if stopped else 'already finished'} "
         f"(status {summary.status})")


@jobs_app.command("logs")
def jobs_logs_cmd(
    job_id: str = typer.Argument(..., help="submission id (raysubmit_...)"),
    address: str | None = _address_option(),
    follow: bool = typer.Option(False, "--follow", "-f", help="follow until the job ends"),
) -> None:
    """A job's output (stdout and stderr of its driver)."""
    from raysweep.sweep.jobs import connect, job_logs, wait_for_job

    client, url = connect(address)
    if follow:
        wait_for_job(client, url, job_id, out=sys.stdout)
        return
    sys.stdout.write(job_logs(client, url, job_id))
    sys.stdout.flush()
