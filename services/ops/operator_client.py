"""Call the leading master's operator API (meseta.master.operator_api) with the operator credential.

A standby answers 307 with the leader's URL: followed here by hand, as urllib follows a 307 only for GET.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

TOKEN_ENV = "MESETA_OPERATOR_TOKEN"
MAX_REDIRECTS = 3


class OperatorError(RuntimeError):
    """The API refused the call (its status and reason), or no master answered."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


def read_token(token_file: Path | None) -> str:
    """The operator credential: the file's first line, else ``$MESETA_OPERATOR_TOKEN``."""
    if token_file is not None:
        return token_file.read_text().strip()
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise OperatorError(0, f"no operator credential: give --token-file or set {TOKEN_ENV}")
    return token


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
