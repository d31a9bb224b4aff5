"""What per-message authorization costs a receiver and a sender, in isolation: the ``user_id`` checks
(meseta.master.authority, the agent's and the SDK's) and the ``user_id`` property packed into every
publish (meseta.sdk._frames). Compared in docs/BENCHMARKS.md with an offer cycle's round trip.

    ../.venv/bin/python authorization.py [--out authorization.json]
"""

from __future__ import annotations

import argparse
import json
import timeit
from pathlib import Path

from meseta.master.authority import Authority
from meseta.sdk import _frames, wire

P = wire.Principals("meseta")


def _per_call_ns(stmt: object, number: int = 200_000) -> float:
    best = min(timeit.repeat(stmt, number=number, repeat=5))  # type: ignore[arg-type]
    return best / number * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="authorization.json")
    args = parser.parse_args()
    authority = Authority(P)
    heartbeat = wire.Heartbeat(agent_id="agent-17", free=wire.Resources(cpus=1, mem=512))
    accept = wire.Accept(framework_id="alice-0123456789abcdef", secret="s", offer_ids=("offer-1",))
    agent_user, alice = P.agent("agent-17"), P.framework("alice")
    task = wire.TaskInfo(
        task_id="t1",
        resources=wire.Resources(cpus=1, mem=64),
        container=wire.ContainerSpec.shell("meseta-task:latest", "true"),
    )
    launch = wire.LaunchTasks(agent_id="agent-17", framework_id="alice-0123456789abcdef", tasks=(task,))
    body = wire.encode(launch)
    plain = _frames.Outgoing("meseta.launches", "agent-17", body, launch.type, launch.message_id, {})
    stamped = _frames.Outgoing(
        "meseta.launches", "agent-17", body, launch.type, launch.message_id, {}, user_id=P.master
    )
    figures = {
        "master: an agent's message (Authority.agents)": _per_call_ns(
            lambda: authority.agents(heartbeat, agent_user)
        ),
        "master: a framework's call (Authority.call + caller)": _per_call_ns(
            lambda: (authority.caller(alice), authority.call(accept, alice, "alice"))
        ),
        "agent/framework/allocator: from the master (wire.refusal)": _per_call_ns(
            lambda: wire.refusal(launch.type, P.master, P.master)
        ),
        "sender: packing a publish without user_id": _per_call_ns(
            lambda: _frames.publish_frames(1, plain, 131064)
        ),
        "sender: packing a publish with user_id": _per_call_ns(
            lambda: _frames.publish_frames(1, stamped, 131064)
        ),
    }
    for name, ns in figures.items():
        print(f"{ns:8.0f} ns  {name}")
    Path(args.out).write_text(json.dumps({"ns_per_call": figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
