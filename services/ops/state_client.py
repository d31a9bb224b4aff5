"""Read the cluster's state from whichever master leads."""

from __future__ import annotations

import urllib.error
import urllib.request

from meseta.master.views import StateView
from meseta.runtime import defaults

DEFAULT_API = defaults.API


class NoLeader(RuntimeError):
    """No master in the list answered as the leader."""


def fetch_state(apis: list[str], timeout: float = 5.0) -> StateView:
    """The state from the first master in ``apis`` that leads (standbys answer 503)."""
    why: list[str] = []
    for base in apis:
        url = base.rstrip("/") + "/api/v1/state"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return StateView.model_validate_json(response.read())
        except urllib.error.HTTPError as exc:
            why.append(f"{base}: {'standby' if exc.code == 503 else f'HTTP {exc.code}'}")
        except (urllib.error.URLError, OSError) as exc:
            why.append(f"{base}: {getattr(exc, 'reason', exc)}")
    raise NoLeader("no leading master answered: " + "; ".join(why))


def split_apis(text: str) -> list[str]:
    """``http://m1:5050,http://m2:5050`` -> a list."""
    return [part.strip() for part in text.split(",") if part.strip()]
