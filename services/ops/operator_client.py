"""Call the leading master's operator API (meseta.master.operator_api) with the operator credential.

A standby answers 307 with the leader's URL: followed here by hand, as urllib follows a 307 only for GET.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from meseta.runtime import defaults

TOKEN_ENV = "MESETA_OPERATOR_TOKEN"
UP_DIR_ENV = "MESETA_UP_DIR"
MAX_REDIRECTS = 3


class OperatorError(RuntimeError):
    """The API refused the call (its status and reason), or no master answered."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


def up_token_file() -> Path:
    """Where ``meseta up`` writes its master's credential (``$MESETA_UP_DIR``, as ``meseta up`` reads it)."""
    return Path(os.environ.get(UP_DIR_ENV) or defaults.UP_DIR) / defaults.OPERATOR_TOKEN_NAME


def read_token(token_file: Path | None) -> str:
    """The operator credential: the file's first line, else ``$MESETA_OPERATOR_TOKEN``, else the one a
    ``meseta up`` on this host wrote (as kubectl falls back to ~/.kube/config)."""
    if token_file is not None:
        try:
            return token_file.read_text().strip()
        except OSError as exc:
            raise OperatorError(
                0, f"cannot read the operator credential {token_file}: {exc.strerror}"
            ) from None
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    with contextlib.suppress(OSError):
        if token := up_token_file().read_text().strip():
            return token
    raise OperatorError(
        0, f"no operator credential: give --token-file, set {TOKEN_ENV}, or run meseta up on this host"
    )


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 307 comes back as an HTTPError, read below


_OPENER = urllib.request.build_opener(_NoRedirects)


def call(apis: list[str], method: str, path: str, token: str, body: Any = None, timeout: float = 10.0) -> Any:
    """``method path`` on the first master of ``apis`` that answers (a standby's 307 is followed)."""
    data = None if body is None else json.dumps(body).encode()
    why: list[str] = []
    for base in apis:
        url = base.rstrip("/") + path
        for _ in range(MAX_REDIRECTS + 1):
            request = urllib.request.Request(url, data=data, method=method)
            request.add_header("Authorization", f"Bearer {token}")
            if data is not None:
                request.add_header("Content-Type", "application/json")
            try:
                with _OPENER.open(request, timeout=timeout) as response:
                    return json.loads(response.read() or b"null")
            except urllib.error.HTTPError as exc:
                if exc.code == 307 and exc.headers.get("Location"):
                    url = exc.headers["Location"]
                    continue
                text = exc.read().decode(errors="replace")
                try:
                    message = str(json.loads(text).get("error", text))
                except (ValueError, AttributeError):
                    message = text
                if exc.code == 503:
                    why.append(f"{base}: {message}")
                    break
                raise OperatorError(exc.code, message) from None
            except (urllib.error.URLError, OSError) as exc:
                why.append(f"{base}: {getattr(exc, 'reason', exc)}")
                break
    raise OperatorError(0, "no leading master answered: " + "; ".join(why))
