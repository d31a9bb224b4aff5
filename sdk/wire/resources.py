"""Resources: scalars in Mesos's fixed-point precision, and port ranges."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Final, Self

from pydantic import Field, field_validator, model_validator

from meseta.sdk.wire.base import _Frozen

__all__ = [
    "MAX_CPUS",
    "MAX_GPUS",
    "MAX_MIB",
    "PortRange",
    "Resources",
    "total",
]


_SCALAR_DECIMALS = 3  # Mesos's fixed-point precision: keeps 0.1 + 0.2 - 0.3 from leaving residue.
_SCALE = 10**_SCALAR_DECIMALS


class PortRange(_Frozen):
    """An inclusive range of host ports."""

    begin: int = Field(ge=1, le=65535)
    end: int = Field(ge=1, le=65535)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.begin > self.end:
            raise ValueError(f"port range begins after it ends: {self.begin}-{self.end}")
        return self

    def __len__(self) -> int:
        return self.end - self.begin + 1


def _merge(ranges: Iterable[PortRange]) -> tuple[PortRange, ...]:
    merged: list[list[int]] = []
    for r in sorted(ranges, key=lambda r: r.begin):
        if merged and r.begin <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], r.end)
        else:
            merged.append([r.begin, r.end])
    return tuple(PortRange(begin=b, end=e) for b, e in merged)


def _subtract(ranges: tuple[PortRange, ...], take: tuple[PortRange, ...]) -> tuple[PortRange, ...]:
    left = list(_merge(ranges))
    for t in _merge(take):
        out: list[PortRange] = []
        for r in left:
            if t.end < r.begin or t.begin > r.end:
                out.append(r)
                continue
            if r.begin < t.begin:
                out.append(PortRange(begin=r.begin, end=t.begin - 1))
            if t.end < r.end:
                out.append(PortRange(begin=t.end + 1, end=r.end))
        left = out
    return tuple(left)


def _ports_within(inner: tuple[PortRange, ...], outer: tuple[PortRange, ...]) -> bool:
    return not _subtract(inner, outer)


MAX_CPUS: Final = 1_000_000.0
MAX_MIB: Final = 1024.0**4
"""An exbibyte, in MiB."""
MAX_GPUS: Final = 100_000


class Resources(_Frozen):
    """A resource vector on one agent: scalars plus host port ranges.

    ``mem`` and ``disk`` are in MiB. Arithmetic rounds scalars to three decimals, as Mesos does.
    """

    # Bounded far above any machine, so that sums over 50,000 agents stay exact and finite.
    cpus: float = Field(default=0.0, ge=0, le=MAX_CPUS)
    mem: float = Field(default=0.0, ge=0, le=MAX_MIB)
    disk: float = Field(default=0.0, ge=0, le=MAX_MIB)
    gpus: int = Field(default=0, ge=0, le=MAX_GPUS)
    ports: tuple[PortRange, ...] = ()

    SCALARS: ClassVar[tuple[str, ...]] = ("cpus", "mem", "disk", "gpus")

    @field_validator("ports")
    @classmethod
    def _normalise_ports(cls, v: tuple[PortRange, ...]) -> tuple[PortRange, ...]:
        return _merge(v)

    def scalars(self) -> dict[str, float]:
        """The scalar resources by name."""
        return {name: float(getattr(self, name)) for name in self.SCALARS}

    def _combine(self, other: Resources, sign: int) -> Resources:
        # round(x * 1000) / 1000, not round(x, 3): the same fixed point, at a quarter of the cost.
        cpus = round((self.cpus + sign * other.cpus) * _SCALE) / _SCALE
        mem = round((self.mem + sign * other.mem) * _SCALE) / _SCALE
        disk = round((self.disk + sign * other.disk) * _SCALE) / _SCALE
        gpus = self.gpus + sign * other.gpus
        if cpus < 0 or mem < 0 or disk < 0 or gpus < 0:
            raise ValueError(f"resources would go negative: {self} - {other}")
        values: dict[str, Any] = {"cpus": cpus, "mem": mem, "disk": disk, "gpus": gpus}
        if not self.ports and not other.ports:
            # Hot path (allocator and master bookkeeping): the values were checked above, so the
            # model's validation would only cost time.
            return Resources.model_construct(**values, ports=())
        ports = _merge(self.ports + other.ports) if sign > 0 else _subtract(self.ports, other.ports)
        return Resources(**values, ports=ports)

    def __add__(self, other: Resources) -> Resources:
        return self._combine(other, +1)

    def __sub__(self, other: Resources) -> Resources:
        """Subtract ``other``, which must fit in ``self``."""
        return self._combine(other, -1)

    def fits_in(self, other: Resources) -> bool:
        """Whether every part of ``self`` is contained in ``other``."""
        scalars_fit = all(
            getattr(self, n) <= getattr(other, n) + 10**-_SCALAR_DECIMALS / 2 for n in self.SCALARS
        )
        return scalars_fit and _ports_within(self.ports, other.ports)

    def shortfall(self, held: Resources) -> Resources:
        """Per scalar, how much ``held`` lacks of ``self`` (never negative; ports are not counted)."""
        h = held.scalars()
        gaps = {n: max(0.0, round(v - h[n], _SCALAR_DECIMALS)) for n, v in self.scalars().items()}
        return Resources(cpus=gaps["cpus"], mem=gaps["mem"], disk=gaps["disk"], gpus=int(gaps["gpus"]))

    def clamp(self, limit: Resources) -> Resources:
        """Per scalar, the smaller of ``self`` and ``limit`` (ports are not counted)."""
        lim = limit.scalars()
        low = {n: min(v, lim[n]) for n, v in self.scalars().items()}
        return Resources(cpus=low["cpus"], mem=low["mem"], disk=low["disk"], gpus=int(low["gpus"]))

    def is_empty(self) -> bool:
        """No scalar and no port."""
        return not self.ports and all(v == 0 for v in self.scalars().values())

    def port_count(self) -> int:
        """How many ports the ranges hold."""
        return sum(len(r) for r in self.ports)


def total(resources: Iterable[Resources]) -> Resources:
    """The sum of several resource vectors: the same sum, rounded at each step, as adding them one by
    one, with one model made at the end rather than one per term (an ACCEPT of 50 tasks sums 50)."""
    cpus = mem = disk = 0.0
    gpus = 0
    ports: tuple[PortRange, ...] = ()
    for r in resources:
        cpus = round((cpus + r.cpus) * _SCALE) / _SCALE
        mem = round((mem + r.mem) * _SCALE) / _SCALE
        disk = round((disk + r.disk) * _SCALE) / _SCALE
        gpus += r.gpus
        if r.ports:
            ports += r.ports
    if not ports:
        # Each term was a valid vector and sums of them stay within the bounds: no validation to redo.
        return Resources.model_construct(cpus=cpus, mem=mem, disk=disk, gpus=gpus, ports=())
    return Resources(cpus=cpus, mem=mem, disk=disk, gpus=gpus, ports=_merge(ports))
