"""Keep credentials out of what raysweep prints and stores.

An ``MLFLOW_TRACKING_URI`` such as ``https://alice:s3cret@mlflow.example.org`` carries a
password. Anything raysweep prints (status, errors, hints), stores (``state.json``, bench
summaries) or hands to a Ray job goes through :func:`redact_uri` first, and files that hold
anything a stranger should not read are written with :func:`write_private` (mode 0600).

Example:
    >>> redact_uri("https://alice:s3cret@mlflow.example.org/?token=abc&x=1")
    'https://alice:***@mlflow.example.org/?token=***&x=1'
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from raysweep.errors import UserError

__all__ = ["MASK", "redact_uri", "strip_credentials", "has_credentials", "is_secret_name",
           "restore_credentials", "write_private"]

MASK = "***"

# scheme://user:password@ anywhere in a text (a URI alone, or one inside an error message).
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*):(?P<pw>[^@\s/]*)@")
# ?password=... / &token=...: credentials passed as query parameters.
_QUERY = re.compile(r"(?i)(?P<head>[?&;](?:password|passwd|pwd|pass|token|access_token|"
                    r"api_key|apikey|secret|sig|signature|key)=)(?P<val>[^&;#\s]*)")
# Names of environment variables that hold credentials (MLFLOW_TRACKING_PASSWORD, AWS keys...).
_SECRET_NAME = re.compile(r"(?i)(PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|API_?KEY|"
                          r"ACCESS_?KEY|PRIVATE_?KEY|SESSION_?KEY)")


def redact_uri(text: str | None) -> str:
    """``text`` with the password of every ``scheme://user:password@`` and every credential
    query parameter replaced by ``***``; the user name, host and path stay readable.

    Works on a bare URI and on any text that contains URIs (an error line, a log message).
    ``None`` gives ``""``.
    """
    if not text:
        return "" if text is None else text
    out = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@" if m["pw"] else m[0], str(text))
    return _QUERY.sub(lambda m: f"{m['head']}{MASK}" if m["val"] else m[0], out)


def has_credentials(uri: str | None) -> bool:
    """Whether ``uri`` carries a password or a credential query parameter."""
    return bool(uri) and redact_uri(uri) != uri


def strip_credentials(uri: str) -> str:
    """``uri`` without its ``user:password@`` part and credential query parameters: what can be
    handed to another process, which then authenticates from its own environment
    (``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``)."""
    parts = urlsplit(uri)
    if not parts.scheme or "@" not in parts.netloc:
        netloc = parts.netloc
    else:
        netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(q for q in parts.query.split("&")
                     if q and _QUERY.search("?" + q) is None)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def restore_credentials(stored: str, what: str = "state.json tracking_uri") -> str:
    """The usable form of a URI that was stored redacted.

    ``stored`` without ``***`` is returned as is. Otherwise the password comes from this
    environment: ``MLFLOW_TRACKING_URI`` when it is the same URI with its password, or
    ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` (MLflow reads them itself, so the
    URI is returned without credentials). Raises :class:`UserError` when neither is set.
    """
    if MASK not in stored:
        return stored
    env = os.environ.get("MLFLOW_TRACKING_URI", "")
    if env and redact_uri(env) == stored:
        return env
    if os.environ.get("MLFLOW_TRACKING_PASSWORD") or os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return strip_credentials(stored)
    raise UserError(f"{what} {stored}: saved without its password; set MLFLOW_TRACKING_URI to "
                    f"this URI with the password, or MLFLOW_TRACKING_USERNAME and "
                    f"MLFLOW_TRACKING_PASSWORD")


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's name says it holds a credential."""
    return bool(_SECRET_NAME.search(name))


def write_private(path: Path, text: str | bytes) -> None:
    """Write ``path`` atomically with mode 0600, whatever the umask (a temporary file in the
    same directory, then a rename: a reader never sees half a file)."""
    data = text.encode() if isinstance(text, str) else text
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o600)  # O_CREAT's mode only applies to a new file
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
