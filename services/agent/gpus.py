"""GPU discovery: NVIDIA GPUs through NVML when the driver is there, none otherwise."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def discover_gpus() -> tuple[str, ...]:
    """The device indices NVML reports, as strings (Docker's device ids); () without NVML or a driver."""
    try:
        import pynvml  # type: ignore[import-not-found]  # from nvidia-ml-py, optional
    except ImportError:
        return ()
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # pynvml raises its own NVMLError subclasses
        log.info("no NVIDIA driver: %s", exc)
        return ()
    try:
        return tuple(str(i) for i in range(pynvml.nvmlDeviceGetCount()))
    finally:
        pynvml.nvmlShutdown()
