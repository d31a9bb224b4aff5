"""DRF fairness over time: four frameworks with different task shapes share a cluster.

Each framework always wants more: it packs its own task shape into every offer; tasks run a few seconds,
so resources churn and the allocator keeps re-deciding. Every half second the master's state API gives
each framework's dominant share; the ideal under DRF with equal weights is the progressive-filling
point where every framework has the same dominant share and the first resource runs out. Prints the
shares against the ideal and writes bench/results/fairness.json and fairness.png.

    .venv/bin/python bench/fairness.py --agents 20 --duration 40
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
from typing import Any

from harness import RESULTS, control_plane, noop_task, write_result

from meseta.ops.state_client import fetch_state
from meseta.sdk import FrameworkClient, eventloop, wire

AGENT_CPUS, AGENT_MEM = 8.0, 16384.0
SHAPES: dict[str, tuple[float, float]] = {
    "cpu-heavy": (2.0, 512.0),
    "mem-heavy": (0.25, 3072.0),
    "balanced": (1.0, 2048.0),
    "small": (0.5, 256.0),
}


def drf_ideal(agents: int) -> float:
    """Equal dominant shares s for all; s grows until a resource is used up (progressive filling)."""
    total = {"cpus": AGENT_CPUS * agents, "mem": AGENT_MEM * agents}
    per_share = {"cpus": 0.0, "mem": 0.0}  # resources used per unit of common dominant share
    for cpus, mem in SHAPES.values():
        dominant = max(cpus / total["cpus"], mem / total["mem"])
        per_share["cpus"] += cpus / dominant
        per_share["mem"] += mem / dominant
    return min(total[r] / per_share[r] for r in total)


async def packer(client: FrameworkClient, cpus: float, mem: float, seconds: float) -> None:
    ids = itertools.count()
    async for event in client.events():
        if isinstance(event, wire.Offers):
            for offer in event.offers:
                fit = int(min(offer.resources.cpus // cpus, offer.resources.mem // mem))
                if fit <= 0:
                    await client.decline([offer.offer_id], refuse_seconds=1)
                    continue
                tasks = [noop_task(f"{client.name}-{next(ids)}", cpus, mem, seconds) for _ in range(fit)]
                await client.accept([offer.offer_id], tasks)


async def measure(agents: int, duration: float, task_seconds: float) -> dict[str, Any]:
    async with control_plane(agents, cpus=AGENT_CPUS, mem=AGENT_MEM, task_seconds=task_seconds) as bench:
        loops = []
        ids: dict[str, str] = {}
        for name, (cpus, mem) in SHAPES.items():
            client = FrameworkClient(bench.cluster.amqp_url, name)
            await client.subscribe(timeout=60)
            bench.clients.append(client)
            ids[name] = client.framework_id or ""
            loops.append(asyncio.create_task(packer(client, cpus, mem, task_seconds)))
        began = time.monotonic()
        samples: list[dict[str, float]] = []
        times: list[float] = []
        while time.monotonic() - began < duration:
            state = await asyncio.to_thread(fetch_state, bench.cluster.apis)
            shares = {f.name: f.dominant_share for f in state.frameworks}
            samples.append(shares)
            times.append(time.monotonic() - began)
            await asyncio.sleep(0.5)
        for loop in loops:
            loop.cancel()
    ideal = drf_ideal(agents)
    settled = samples[len(samples) // 2 :]
    means = {name: statistics.fmean(s.get(name, 0.0) for s in settled) for name in SHAPES}
    return {
        "agents": agents,
        "duration_s": duration,
        "task_seconds": task_seconds,
        "shapes": {n: {"cpus": c, "mem": m} for n, (c, m) in SHAPES.items()},
        "ideal_dominant_share": round(ideal, 4),
        "mean_dominant_share_second_half": {n: round(v, 4) for n, v in means.items()},
        "max_deviation_from_ideal": round(max(abs(v - ideal) for v in means.values()), 4),
        "series": {
            "t": [round(t, 2) for t in times],
            **{n: [round(s.get(n, 0.0), 4) for s in samples] for n in SHAPES},
        },
    }


def plot(result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = result["series"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name in SHAPES:
        ax.plot(series["t"], series[name], label=name)
    ax.axhline(result["ideal_dominant_share"], color="black", linestyle="--", label="DRF ideal")
    ax.set_xlabel("seconds")
    ax.set_ylabel("dominant share (tasks + offers)")
    ax.set_title(f"DRF on {result['agents']} agents: four task shapes")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "fairness.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--duration", type=float, default=40)
    parser.add_argument("--task-seconds", type=float, default=3)
    parser.add_argument("--out", default="fairness.json")
    args = parser.parse_args()
    result = eventloop.run(measure(args.agents, args.duration, args.task_seconds))
    write_result(args.out, result)
    plot(result)
    print(f"DRF ideal dominant share {result['ideal_dominant_share']}")
    for name, share in result["mean_dominant_share_second_half"].items():
        print(f"  {name:10s} {share:.3f}")
    print(f"max deviation {result['max_deviation_from_ideal']}")


if __name__ == "__main__":
    main()
