"""The sync Client's overhead over a bare httpx POST of the same call to the same agent.

Both send ``POST /v1/tools/call`` for the demo ``echo`` in one scope over one keep-alive
``httpx.Client`` and decode the JSON answer; the Client also builds the request, checks
the status, and makes a ``CallResult``. The two alternate call by call (the order flips
every pair), so both see the same machine; per round, the p50 of each side, the median of
the paired differences (the overhead) and the ratio of the p50s; reported: the medians
over rounds. Also the difference in this thread's CPU time per call, which the agent's
speed hardly touches, and the same with the network taken out (``httpx.MockTransport``
on both sides): the client's own cost.

    MCPWATCH_BIN=target/debug/mcpwatch python clients/python/benches/overhead.py [rounds] [pairs]

The agent is started on free ports (``mcpwatch_client.testing``) and stopped at the end.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable

import httpx

from mcpwatch_client import Client
from mcpwatch_client.testing import start_agent

BODY = {"server": "demo", "tool": "echo", "arguments": {"message": "x"}, "scope": "bench"}
WARMUP = 300


def bare_call(http: httpx.Client) -> Callable[[], object]:
    """What a hand-written client does: POST, check the status, decode."""
    headers = {"X-Mcpwatch-Scope": "bench"}

    def call() -> object:
        response = http.post("/v1/tools/call", json=BODY, headers=headers)
        response.raise_for_status()
        return response.json()

    return call


def client_call(client: Client) -> Callable[[], object]:
    def call() -> object:
        return client.call_tool("demo", "echo", {"message": "x"}, scope="bench")

    return call


def timed(call: Callable[[], object]) -> tuple[int, int]:
    """Wall-clock and this thread's CPU time of one call, in ns."""
    wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
    call()
    return time.perf_counter_ns() - wall, time.thread_time_ns() - cpu


def one_round(
    bare: Callable[[], object], ours: Callable[[], object], pairs: int
) -> dict[str, float]:
    """``pairs`` pairs of calls, the order flipping every pair; medians in microseconds."""
    wall: dict[str, list[int]] = {"bare": [], "ours": []}
    cpu: dict[str, list[int]] = {"bare": [], "ours": []}
    for pair in range(pairs):
        order = (
            (("bare", bare), ("ours", ours)) if pair % 2 == 0 else (("ours", ours), ("bare", bare))
        )
        for name, call in order:
            w, c = timed(call)
            wall[name].append(w)
            cpu[name].append(c)
    differences = [o - b for o, b in zip(wall["ours"], wall["bare"], strict=True)]
    return {
        "bare_p50": statistics.median(wall["bare"]) / 1000,
        "ours_p50": statistics.median(wall["ours"]) / 1000,
        "paired_difference": statistics.median(differences) / 1000,
        "ratio": statistics.median(wall["ours"]) / statistics.median(wall["bare"]),
        "cpu_difference": (statistics.median(cpu["ours"]) - statistics.median(cpu["bare"])) / 1000,
        "bare_cpu": statistics.median(cpu["bare"]) / 1000,
    }


def offline_overhead_us(rounds: int, pairs: int) -> float:
    """The client's own CPU per call with the network taken out: both sides over
    ``httpx.MockTransport`` answering the agent's answer; median of paired rounds."""
    answer = {
        "result": {"content": [{"type": "text", "text": "x"}], "isError": False},
        "session": {"reused": True, "age_ms": 1},
        "duration_ms": 0.1,
    }
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    with (
        httpx.Client(base_url="http://agent", transport=transport) as http,
        Client("http://agent", transport=transport) as client,
    ):
        bare, ours = bare_call(http), client_call(client)
        differences = []
        for _ in range(rounds):
            cpu = {}
            for name, call in (("bare", bare), ("ours", ours)):
                started = time.thread_time_ns()
                for _ in range(pairs):
                    call()
                cpu[name] = (time.thread_time_ns() - started) / pairs / 1000
            differences.append(cpu["ours"] - cpu["bare"])
    return round(statistics.median(differences), 1)


def main(rounds: int, pairs: int) -> None:
    with start_agent() as agent, httpx.Client(base_url=agent.api) as http, agent.client() as client:
        bare, ours = bare_call(http), client_call(client)
        for _ in range(WARMUP):
            bare()
            ours()
        results = [one_round(bare, ours, pairs) for _ in range(rounds)]
    offline = offline_overhead_us(rounds, pairs)

    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in results), 1)

    print(
        json.dumps(
            {
                "rounds": rounds,
                "pairs_per_round": pairs,
                "bare_p50_us": median("bare_p50"),
                "client_p50_us": median("ours_p50"),
                "overhead_p50_us": median("paired_difference"),
                "overhead_by_round_us": sorted(round(r["paired_difference"], 1) for r in results),
                "paired_ratio": round(statistics.median(r["ratio"] for r in results), 3),
                "bare_cpu_us": median("bare_cpu"),
                "client_cpu_overhead_us": median("cpu_difference"),
                "offline_cpu_overhead_us": offline,
            }
        )
    )


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 20,
        int(sys.argv[2]) if len(sys.argv) > 2 else 500,
    )
