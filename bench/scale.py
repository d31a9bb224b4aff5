"""Offer cycles as the cluster grows: 100, 1,000, 10,000, 50,000 emulated agents (as far as this machine
goes; it says where it stopped and why).

Each point runs bench/offer_cycle.py's measurement with one-cpu agents and one task per offer. Each
framework keeps at most ``--limit`` five-second tasks running and declines the rest of what it is
offered for an hour, so the offered load is the same whatever the size: the points differ in how many
agents the master holds, not in how hard the frameworks push. Heartbeats slow down with size so that the
cluster sends at most ``HEARTBEATS_PER_SECOND`` (every max(5, agents / 100) s), as Nomad's servers
stretch heartbeat TTLs to hold 50 a second: at 10,000 agents every 10 s, the master fell 30,000
heartbeats behind. The first offers to every agent go out at once (an offer per agent and framework,
each declined once): the window opens when that first round has drained (the master holds at most
frameworks x limit offers), and the point records how long that took. Records offer-cycle percentiles,
master CPU and RSS, broker message rate; writes bench/results/scale.json (``--merge`` keeps the points of
sizes not run this time) and scale.png.

    .venv/bin/python bench/scale.py --max-agents 50000
    .venv/bin/python bench/scale.py --sizes 50000 --merge
"""

from __future__ import annotations

import argparse
import json
import traceback
from typing import Any

from harness import RESULTS, write_result
from offer_cycle import measure

from meseta.sdk import eventloop

SIZES = (100, 1_000, 10_000, 50_000)
HEARTBEATS_PER_SECOND = 100


def plot(points: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [p for p in points if p.get("cycles")]
    if not done:
        return
    agents = [p["agents"] for p in done]
    fig, (lat, cpu) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        lat.plot(agents, [p[key] for p in done], marker="o", label=key.removesuffix("_ms"))
    lat.set_xscale("log")
    lat.set_yscale("log")
    lat.set_xlabel("emulated agents")
    lat.set_ylabel("offer round trip (ms)")
    lat.set_title("Offer round trip")
    lat.legend()
    cpu.plot(agents, [p["master_cpu_percent"] for p in done], marker="o", label="master CPU %")
    cpu.plot(agents, [p["master_rss_mb"] for p in done], marker="s", label="master RSS MB")
    cpu.set_xscale("log")
    cpu.set_xlabel("emulated agents")
    cpu.set_title("Master cost")
    cpu.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "scale.png", dpi=110)
    plt.close(fig)


async def sweep(
    sizes: list[int], frameworks: int, duration: float, limit: int, warmup: float = 10.0
) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = []
    for agents in sizes:
        try:
            point = await measure(
                agents,
                frameworks,
                duration,
                task_seconds=5.0,
                warmup=warmup,
                # Then until the first round (an offer per agent and framework) has drained.
                settle_timeout=max(30.0, agents / 100),
                heartbeat_interval=max(5.0, agents / HEARTBEATS_PER_SECOND),
                per_offer=1,
                agent_cpus=1,
                start_timeout=max(120.0, agents / 10),
                limit=limit,
                emulators=1 if agents < 5_000 else 2,
            )
        except Exception as exc:  # where the machine stops: say why, keep what was measured
            points.append({"agents": agents, "stopped": f"{type(exc).__name__}: {exc}"[:500]})
            traceback.print_exc()
            break
        points.append(point)
        print(json.dumps({k: v for k, v in point.items() if k not in ("stages", "round_trips_ms")}))
    return points


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--max-agents", type=int, default=10_000, help="Without --sizes: the default sizes up to this."
    )
    parser.add_argument("--sizes", help="Comma-separated agent counts, run as given.")
    parser.add_argument("--frameworks", type=int, default=4)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--limit", type=int, default=25, help="Tasks each framework keeps running.")
    parser.add_argument(
        "--warmup", type=float, default=10.0, help="Seconds of load before the first round is awaited."
    )
    parser.add_argument("--out", default="scale.json")
    parser.add_argument(
        "--merge", action="store_true", help="Keep the points of other sizes already in the results file."
    )
    args = parser.parse_args()
    # Sizes asked for by name run, whatever --max-agents says (it silently dropped 50,000 before).
    sizes = (
        [int(n) for n in args.sizes.split(",")] if args.sizes else [n for n in SIZES if n <= args.max_agents]
    )
    points = eventloop.run(sweep(sizes, args.frameworks, args.duration, args.limit, args.warmup))
    if args.merge and (RESULTS / args.out).exists():
        ran = {p["agents"] for p in points}
        kept = [p for p in json.loads((RESULTS / args.out).read_text())["points"] if p["agents"] not in ran]
        points = sorted(kept + points, key=lambda p: int(p["agents"]))
    write_result(args.out, {"points": points})
    plot(points)


if __name__ == "__main__":
    main()
