"""The bearer token: where it comes from, when it is required, and how it is compared.

Why never on the command line: a process's arguments are visible to every user of the machine
(``ps``) and land in shell histories.  The token comes from ``SPARSESEG_TOKEN`` or from a file
(``SPARSESEG_TOKEN_FILE`` or ``--token-file``); the same variable serves the client.  Without a
token the server only listens on a loopback address, where only this machine can reach it.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path

from ..errors import SparsesegError

ENV_TOKEN = "SPARSESEG_TOKEN"
ENV_TOKEN_FILE = "SPARSESEG_TOKEN_FILE"
MIN_LENGTH = 16


class TokenError(SparsesegError):
    """No usable token where one is needed."""


def read_token(token_file: str | Path | None = None) -> str | None:
    """``$SPARSESEG_TOKEN``, else the first line of ``token_file`` / ``$SPARSESEG_TOKEN_FILE``, else None."""
    value = os.environ.get(ENV_TOKEN, "").strip()
    if value:
        return value
    path = token_file or os.environ.get(ENV_TOKEN_FILE)
    if not path:
        return None
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"cannot read the token file {path} ({exc.__class__.__name__})") from None
    lines = text.strip().splitlines()
    value = lines[0].strip() if lines else ""
    if not value:
        raise TokenError(f"the token file {path} is empty")
    return value


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_server_token(host: str, token: str | None) -> None:
    """Refuse to serve a non-loopback address without a token, or with a guessable one."""
    if token is None:
        if not is_loopback(host):
            raise TokenError(
                f"refusing to listen on {host} without a token: set {ENV_TOKEN} (or {ENV_TOKEN_FILE} / "
                "--token-file), or listen on 127.0.0.1 only"
            )
        return
    if len(token) < MIN_LENGTH:
        raise TokenError(f"the token is too short ({len(token)} characters; use at least {MIN_LENGTH}, e.g. "
                         "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison: the time taken says nothing about how much of the token was right."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
