"""Read the cluster's state from whichever master leads."""

from __future__ import annotations

import json
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


def readiness(base: str, timeout: float = 5.0) -> str:
    """What a service's ``/ready`` says: ``ready (leader)``, ``ready (standby)``, ``not ready (...)`` or
    ``unreachable (...)``."""
    try:
        with urllib.request.urlopen(base.rstrip("/") + "/ready", timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            answer = json.loads(exc.read())
        except ValueError:
            return f"not ready (HTTP {exc.code})"
    except (urllib.error.URLError, OSError) as exc:
        return f"unreachable ({getattr(exc, 'reason', exc)})"
    role = answer.get("role")
    detail = f" ({role})" if role else ""
    if answer.get("ready"):
        return "ready" + detail
    return f"not ready{detail}, broker connected: {answer.get('broker')}"


def split_apis(text: str) -> list[str]:
    """``http://m1:5050,http://m2:5050`` -> a list."""
    return [part.strip() for part in text.split(",") if part.strip()]
