"""Start or join Ray with safe defaults: loopback only, no dashboard, token auth on.

Ray job submission and the GCS accept arbitrary code from anyone who can reach them
(ShadowRay, CVE-2023-48022). A sweep on one machine needs none of that exposed, so
:func:`init_local_ray` starts Ray the way a laptop or a shared workstation should run it:

* every Ray process binds to ``127.0.0.1`` (GCS, raylet, object manager, agents);
* no dashboard, hence no Jobs API on port 8265;
* token authentication on (``RAY_AUTH_MODE=token``), with one token for the driver and
  every process it starts.

Why not ``ray.init(_node_ip_address="127.0.0.1")``: Ray 2.60 rewrites a loopback node
address to the machine's routable IP (``services.resolve_ip_for_localhost``), and the GCS
then listens on all interfaces. Ray keeps everything on loopback only in its single-machine
mode (the one it uses on macOS and Windows, ``ray_constants.ENABLE_RAY_CLUSTER = False``),
which :func:`init_local_ray` turns on for the duration of ``ray.init``. Measured here: GCS,
raylet and agents then listen on 127.0.0.1 and ``ray.nodes()`` reports ``127.0.0.1``.

Connecting to a cluster (``address`` or ``RAY_ADDRESS``) changes nothing about binding; it
only switches token auth on when a token is configured, so the driver matches a cluster
started with ``RAY_AUTH_MODE=token``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray._private.worker import BaseContext

__all__ = [
    "AUTH_MODE_ENV",
    "AUTH_TOKEN_ENV",
    "AUTH_TOKEN_PATH_ENV",
    "auth_mode",
    "default_token_path",
    "ensure_token_auth",
    "init_local_ray",
    "loopback_only_supported",
    "running_cluster_address",
    "token_source",
    "warn_if_auth_disabled",
]

AUTH_MODE_ENV = "RAY_AUTH_MODE"
AUTH_TOKEN_ENV = "RAY_AUTH_TOKEN"
AUTH_TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
LOOPBACK = "127.0.0.1"


def default_token_path() -> Path:
    """Where Ray looks for a token when neither environment variable is set."""
    return Path.home() / ".ray" / "auth_token"


def auth_mode(env: Mapping[str, str] | None = None) -> str | None:
    """The ``RAY_AUTH_MODE`` in ``env`` (default ``os.environ``), lower-cased, or ``None``."""
    value = (os.environ if env is None else env).get(AUTH_MODE_ENV)
    return value.strip().lower() if value else None


def token_source(env: Mapping[str, str] | None = None) -> str | None:
    """Name where Ray would read its auth token from, in Ray's order, or ``None`` if nowhere.

    Returns ``"RAY_AUTH_TOKEN"``, ``"RAY_AUTH_TOKEN_PATH=<path>"`` or the default file path.
    Never returns the token itself.
    """
    env = os.environ if env is None else env
    if env.get(AUTH_TOKEN_ENV):
        return AUTH_TOKEN_ENV
    path = env.get(AUTH_TOKEN_PATH_ENV)
    if path:
        return f"{AUTH_TOKEN_PATH_ENV}={path}" if Path(path).is_file() else None
    default = default_token_path()
    return str(default) if default.is_file() else None


def warn_if_auth_disabled(env: Mapping[str, str] | None = None) -> bool:
    """Print one warning line when ``RAY_AUTH_MODE=disabled``: Ray then accepts any client
    that reaches its ports, and a Ray client can run arbitrary code. Returns whether it warned."""
    if auth_mode(env) != "disabled":
        return False
    print("raysweep: warning: RAY_AUTH_MODE=disabled: the Ray cluster accepts unauthenticated "
          "clients (anyone who reaches its ports can run code as you); unset it or set "
          "RAY_AUTH_MODE=token", file=sys.stderr)
    return True


def _refresh_ray_auth_cache() -> None:
    # Ray caches the auth mode (RayConfig) and the token (C++ loader) per process; after an
    # environment change, refresh both or an earlier ray.init in this process wins.
    try:
        # Ray ships no stubs for these Cython classes (present since Ray 2.50).
        from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except Exception:
        pass


def ensure_token_auth(*, create: bool = True) -> str:
    """Make token auth the mode of this process and the Ray processes it starts.

    Leaves an explicit ``RAY_AUTH_MODE`` alone (``disabled`` stays disabled). Otherwise sets
    ``RAY_AUTH_MODE=token``; if no token is configured and ``create`` is true, puts a fresh
    random 256-bit token in ``RAY_AUTH_TOKEN`` for this process and its children, rather than
    writing ``~/.ray/auth_token`` (which would silently switch on auth for every later
    ``ray start`` on the machine). Returns the resulting mode.
    """
    mode = auth_mode()
    if mode is None:
        os.environ[AUTH_MODE_ENV] = mode = "token"
    if mode == "token" and token_source() is None and create:
        os.environ[AUTH_TOKEN_ENV] = secrets.token_hex(32)
    # Refresh even when nothing changed here: an earlier ray.init (or a test that set and
    # restored RAY_AUTH_MODE) may have cached another mode in this process, and the driver
    # would then start a token-auth GCS it cannot talk to.
    _refresh_ray_auth_cache()
    return mode


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


def init_local_ray(
    num_cpus: int | None = None,
    address: str | None = None,
    *,
    num_gpus: int | None = None,
    **ray_init_kwargs: Any,
) -> BaseContext:
    """Start a private local Ray, or join the cluster at ``address``; return the Ray context.

    This signature is stable: the sweep runner calls it.

    Args:
        num_cpus: CPUs for a local Ray (``None``: all of this machine's). Ignored with a
            cluster address, whose nodes declare their own resources.
        address: a cluster to join (``"HOST:6379"``, ``"ray://HOST:10001"``, ``"auto"``).
            ``None`` uses ``RAY_ADDRESS`` when set, else starts a local Ray; ``"local"``
            always starts a local Ray.
        num_gpus: GPUs for a local Ray (``None``: the visible ones). Ignored with an address.
        **ray_init_kwargs: passed to ``ray.init`` (``runtime_env``, ``log_to_driver``,
            ``_temp_dir``, ...). ``include_dashboard=True`` is honoured but the dashboard still
            binds to 127.0.0.1.

    A local Ray binds every process to 127.0.0.1, starts no dashboard and uses token auth
    (see the module docstring). Calling it while Ray is already initialised returns the
    current context unchanged.

    Example:
        >>> from raysweep.sweep.local_ray import init_local_ray
        >>> ctx = init_local_ray(num_cpus=1)  # doctest: +SKIP
        >>> ctx.address_info["node_ip_address"]  # doctest: +SKIP
        '127.0.0.1'
    """
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    import ray

    if ray.is_initialized():
        return ray.init(ignore_reinit_error=True)
    warn_if_auth_disabled()

    target = address if address is not None else (os.environ.get("RAY_ADDRESS") or None)
    if target is not None and target != "local":
        # Joining a cluster: match its auth. An explicit address never auto-enables token
        # auth in Ray, so do it here when a token is configured and the mode is unset.
        if auth_mode() is None and token_source() is not None:
            ensure_token_auth(create=False)
        else:
            _refresh_ray_auth_cache()
        return ray.init(address=target, **ray_init_kwargs)

    ensure_token_auth(create=True)
    ray_init_kwargs.setdefault("include_dashboard", False)
    ray_init_kwargs["dashboard_host"] = LOOPBACK
    # address="local": start a new instance even if a `ray start` cluster runs on this host.
    with _loopback_only():
        return ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus,
                        **ray_init_kwargs)


# Ray's internals are touched in this module only (raysweep's layering test enforces it): the
# rest of raysweep asks these questions instead of importing ``ray._private`` itself.

def loopback_only_supported() -> bool:
    """Whether this Ray has the switch :func:`init_local_ray` uses to keep a local Ray on
    loopback (``ray_constants.ENABLE_RAY_CLUSTER``, private to Ray, so probed, not assumed)."""
    try:
        from ray._private import ray_constants

        return hasattr(ray_constants, "ENABLE_RAY_CLUSTER")
    except Exception:
        return False


def running_cluster_address() -> str | None:
    """The address of a Ray cluster already running on this machine, or ``None``.

    Raises ``LookupError`` when this Ray cannot tell (its private lookup changed).
    """
    try:
        from ray._private import services

        return services.find_bootstrap_address(None) or next(
            iter(services.find_gcs_addresses()), None)
    except Exception as exc:
        raise LookupError(f"this Ray cannot look up a running cluster: {exc}") from exc
