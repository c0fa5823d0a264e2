#!/usr/bin/env python3
"""Where the leader's sequencer thread spends a batch (tests/bench/postgres.sh).

usage: perf script -i perf.data | postgres_perf.py --seq-tid T --tids "T1 T2 ..." \
           --start S --end E --batches N --samples CPU.jsonl --thread NAME

Reads `perf script` output of raw_syscalls:sys_enter/sys_exit events recorded system-wide with
`-k CLOCK_MONOTONIC` (the kernel filters them to a few syscalls by id; per-thread perf events do
not work on this VM). Pairs enter and exit per thread and sums, inside the window [S, E]
(CLOCK_MONOTONIC seconds), the time the node's threads spent in each traced syscall. For the
sequencer thread (T) the wall time of the window splits into: blocked in epoll_wait (its
PostgreSQL client waiting for the server's answers: the network round trips, PostgreSQL's work
and its WAL flush), blocked in futex (waiting for sled's I/O threads, a lock, or for work),
other traced calls, on a CPU (the thread's schedstat, sampled by postgres_cpu.py into CPU.jsonl
as NAME_cpu_ns and NAME_wait_ns; the samples nearest S and E), and the rest (calls not traced,
preemption, the sampling's edges). A syscall's time runs from its entry to its exit, so it
includes the wait for a CPU after the wake-up; the run-queue wait (schedstat) is given apart.
Prints one line, per batch (N batches in the window).
"""
import argparse
import json
import re
import sys
from collections import defaultdict

NAMES = {232: "epoll_wait", 281: "epoll_pwait", 441: "epoll_pwait2", 202: "futex", 7: "poll", 271: "ppoll",
         277: "sync_file_range", 74: "fsync", 75: "fdatasync", 18: "pwrite64", 296: "pwritev", 328: "pwritev2"}
EPOLL = {"epoll_wait", "epoll_pwait", "epoll_pwait2", "poll", "ppoll"}
LINE = re.compile(r"^\s*(.+?)\s+(\d+)\s+\[\d+\]\s+([\d.]+):\s+raw_syscalls:sys_(enter|exit):\s+NR (\d+)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq-tid", type=int, required=True)
    ap.add_argument("--tids", required=True)
    ap.add_argument("--start", type=float, required=True)
    ap.add_argument("--end", type=float, required=True)
    ap.add_argument("--batches", type=int, required=True)
    ap.add_argument("--samples", required=True)
    ap.add_argument("--thread", required=True)
    args = ap.parse_args()
    mine = {int(t) for t in args.tids.split()}
    entered = {}
    total = defaultdict(float)  # (thread class, syscall) -> seconds
    calls = defaultdict(int)
    comms = {}
    for line in sys.stdin:
        m = LINE.match(line)
        if not m:
            continue
        comm, tid, t, kind, nr = m.group(1), int(m.group(2)), float(m.group(3)), m.group(4), int(m.group(5))
        if tid not in mine:
            continue
        comms[tid] = comm
        if kind == "enter":
            entered[tid] = (nr, t)
            continue
        start = entered.pop(tid, None)
        if start is None or start[0] != nr:
            continue
        a, b = max(start[1], args.start), min(t, args.end)
        if b <= a:
            continue
        who = "sequencer" if tid == args.seq_tid else re.sub(r"[-_]?\d+$", "", comm)
        key = (who, NAMES.get(nr, f"NR{nr}"))
        total[key] += b - a
        calls[key] += 1
    n = max(1, args.batches)
    wall = args.end - args.start
    seq_epoll = sum(v for (w, s), v in total.items() if w == "sequencer" and s in EPOLL)
    seq_epoll_calls = sum(c for (w, s), c in calls.items() if w == "sequencer" and s in EPOLL)
    seq_futex_calls = calls[("sequencer", "futex")]
    seq_futex = total[("sequencer", "futex")]
    seq_other = sum(v for (w, s), v in total.items() if w == "sequencer" and s not in EPOLL and s != "futex")
    rows = [json.loads(line) for line in open(args.samples) if line.strip()]
    a = min(rows, key=lambda r: abs(r["m"] - args.start))
    b = min(rows, key=lambda r: abs(r["m"] - args.end))
    scale = wall / max(1e-9, b["m"] - a["m"])  # the samples' span to the window's
    seq_cpu = scale * (b[args.thread + "_cpu_ns"] - a[args.thread + "_cpu_ns"]) / 1e9
    seq_runq = scale * (b[args.thread + "_wait_ns"] - a[args.thread + "_wait_ns"]) / 1e9
    rest = wall - seq_epoll - seq_futex - seq_other - seq_cpu
    ms = lambda v: f"{1000 * v / n:.3f} ms"  # noqa: E731
    out = [f"per batch ({n} batches in the {wall:.2f} s measured, {1000 * wall / n:.3f} ms each), the sequencer thread: "
           f"on a CPU {ms(seq_cpu)}; blocked in epoll_wait {ms(seq_epoll)} in {seq_epoll_calls / n:.1f} calls (its PostgreSQL "
           f"client awaiting answers: round trips, PostgreSQL's work, the WAL flush), in futex {ms(seq_futex)} in "
           f"{seq_futex_calls / n:.1f} calls (sled's I/O threads, locks, or no work), "
           f"in other traced calls {ms(seq_other)}; the remainder {ms(rest)} (untraced calls, preemption, sampling edges). "
           f"Runnable but waiting for a CPU: {ms(seq_runq)} (schedstat; after every wake-up, so mostly inside the waits above, "
           f"and when preempted)"]
    io = [f"{w} {s} {calls[(w, s)] / n:.2f} calls {ms(v)}" for (w, s), v in sorted(total.items())
          if w != "sequencer" and s in ("sync_file_range", "fsync", "fdatasync")]
    if io:
        out.append("the node's sync calls: " + ", ".join(io))
    print("; ".join(out))


if __name__ == "__main__":
    main()
