#!/usr/bin/env python3
"""Where the time goes: CPU time per call of each process on a path (issue 14).

    python3 benches/cpu_split.py --label NAME [--root PID ...] -- CLIENT_CMD...

Runs CLIENT_CMD (a benchmark client printing the JSON line of `mcpwatch bench --json`)
twice, with its `--calls` set to N1 and then N2 (`--n1`, `--n2`), while sampling,
every 10 ms, the CPU time (user + system, /proc/PID/stat) of the client, of every
process under it, and of every process under each `--root` PID (a running gateway and its
upstream children). Per process name, the CPU per call is
(CPU in the N2 run - CPU in the N1 run) / (N2 - N1): start-up, warm-up and exit cancel
out. Prints one JSON line: {"label", "calls_per_s", "cpu_us_per_call": {name: us}}.
Linux only; resolution: one clock tick (10 ms) per process and run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time

TICK = os.sysconf("SC_CLK_TCK")


def stat(pid: int) -> tuple[str, float] | None:
    """(command name, CPU seconds) of `pid`, none when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return name, (int(fields[11]) + int(fields[12])) / TICK


def descendants(roots: list[int]) -> set[int]:
    seen, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    todo.extend(int(child) for child in f.read().split())
        except OSError:
            pass
    return seen


def run_once(command: list[str], calls: int, roots: list[int]) -> tuple[dict[str, float], dict]:
    """CPU seconds per process name spent during one client run of `calls` calls."""
    command = [str(calls) if previous == "--calls" else arg
               for previous, arg in zip([""] + command, command)]
    first: dict[int, tuple[str, float]] = {}
    for pid in descendants(roots):
        sample = stat(pid)
        if sample:
            first[pid] = sample
    client = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    last: dict[int, tuple[str, float]] = {}
    while client.poll() is None:
        for pid in descendants(roots + [client.pid]):
            sample = stat(pid)
            if sample:
                last[pid] = sample
        time.sleep(0.01)
    for pid in descendants(roots):
        sample = stat(pid)
        if sample:
            last[pid] = sample
    out = client.stdout.read() if client.stdout else ""
    report = json.loads(out.strip().splitlines()[-1])
    spent: dict[str, float] = {}
    for pid, (name, cpu) in last.items():
        before = first.get(pid, (name, 0.0))[1]
        key = "client" if pid == client.pid else name
        spent[key] = spent.get(key, 0.0) + cpu - before
    return spent, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True)
    parser.add_argument("--root", type=int, action="append", default=[])
    parser.add_argument("--n1", type=int, default=2000)
    parser.add_argument("--n2", type=int, default=12000)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    small, _ = run_once(args.command, args.n1, args.root)
    large, report = run_once(args.command, args.n2, args.root)
    per_call = {name: round((large.get(name, 0.0) - small.get(name, 0.0)) / (args.n2 - args.n1) * 1e6, 1)
                for name in sorted(set(small) | set(large))}
    per_call = {name: us for name, us in per_call.items() if abs(us) >= 0.5}
    print(json.dumps({"label": args.label, "calls_per_s": round(report["calls_per_s"]),
                      "cpu_us_per_call": per_call}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
