#!/usr/bin/env python3
"""CPU use during a measured window (tests/bench/postgres.sh).

  postgres_cpu.py sample OUT INTERVAL_S [--pg POSTMASTER_PID] [NAME=PID[,PID...] ...]
                        [--thread NAME=PID:TID ...]
      Every INTERVAL_S, appends one JSON line to OUT: the wall clock ("t") and CLOCK_MONOTONIC
      ("m"), the CPU seconds the whole machine was busy (all cores, /proc/stat), and those of
      each named group of processes (user + system, /proc/PID/stat); --pg adds the group
      "postgres": the postmaster, the children it reaped and its live children; --thread adds
      a thread's /proc/PID/task/TID/schedstat (NAME_cpu_ns on a CPU, NAME_wait_ns runnable
      waiting for one); --ours PID adds "others": the CPU used by every process that is neither
      PID's descendant nor PostgreSQL's (other people's work on a shared machine). Runs until
      killed.
  postgres_cpu.py window OUT START END
      From the samples nearest to START and END (wall clock, seconds): the machine's busy
      share and each group's use, in cores. Prints one line.
"""
import json
import os
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1


def stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_of(pid, children=False):
    try:
        f = stat_fields(pid)
    except OSError:
        return 0.0
    # After the ")": f[0] = state (field 3), so utime (14) is f[11], stime f[12], cutime f[13], cstime f[14].
    ticks = int(f[11]) + int(f[12]) + ((int(f[13]) + int(f[14])) if children else 0)
    return ticks / HZ


def pg_cpu(postmaster):
    total = cpu_of(postmaster, children=True)
    try:
        kids = open(f"/proc/{postmaster}/task/{postmaster}/children").read().split()
    except OSError:
        kids = []
    return total + sum(cpu_of(k) for k in kids)


def busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / HZ


def all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def parent_of(pid):
    try:
        return int(stat_fields(pid)[1])
    except (OSError, IndexError, ValueError):
        return None


class Others:
    """Cumulative CPU of processes outside our trees, from per-process deltas between scans."""

    def __init__(self, roots):
        self.roots = set(roots)
        self.last = {}
        self.total = 0.0
        self.first = True

    def ours(self, pid):
        seen = 0
        while pid and pid > 1 and seen < 64:
            if pid in self.roots:
                return True
            pid = parent_of(pid)
            seen += 1
        return False

    def scan(self):
        now = {}
        for pid in all_pids():
            if pid in self.last:
                cpu = cpu_of(pid)
                self.total += max(0.0, cpu - self.last[pid])
                now[pid] = cpu
            elif not self.ours(pid):
                cpu = cpu_of(pid)
                if not self.first:
                    self.total += cpu  # started since the last scan
                now[pid] = cpu
        self.last = now
        self.first = False
        return self.total


def sample(out, interval, args):
    pg = None
    others = None
    groups = {}
    threads = {}
    i = 0
    while i < len(args):
        if args[i] == "--pg":
            pg = int(args[i + 1])
            i += 2
            continue
        if args[i] == "--ours":
            others = int(args[i + 1])
            i += 2
            continue
        if args[i] == "--thread":
            name, where = args[i + 1].split("=", 1)
            threads[name] = "/proc/{}/task/{}/schedstat".format(*where.split(":"))
            i += 2
            continue
        name, pids = args[i].split("=", 1)
        groups[name] = [int(p) for p in pids.split(",") if p]
        i += 1
    if others is not None:
        others = Others([others, os.getpid()] + ([pg] if pg else []))
    with open(out, "a") as f:
        while True:
            row = {"t": time.time(), "m": time.monotonic(), "busy": busy()}
            for name, path in threads.items():
                try:
                    cpu_ns, wait_ns = open(path).read().split()[:2]
                    row[name + "_cpu_ns"], row[name + "_wait_ns"] = int(cpu_ns), int(wait_ns)
                except OSError:
                    pass
            for name, pids in groups.items():
                row[name] = sum(cpu_of(p) for p in pids)
            if pg:
                row["postgres"] = pg_cpu(pg)
            if others is not None:
                row["others"] = others.scan()
            f.write(json.dumps(row) + "\n")
            f.flush()
            time.sleep(interval)


def window(out, start, end):
    rows = [json.loads(line) for line in open(out) if line.strip()]
    a = min(rows, key=lambda r: abs(r["t"] - start))
    b = min(rows, key=lambda r: abs(r["t"] - end))
    dt = b["t"] - a["t"]
    if dt <= 0:
        print("(window too short to sample)")
        return
    parts = [f"whole machine {100 * (b['busy'] - a['busy']) / dt / NCPU:.0f}% busy of {NCPU} cores"]
    named = 0.0
    for k in a:
        if k in ("t", "m", "busy", "others") or k.endswith("_ns"):
            continue
        cores = (b[k] - a[k]) / dt
        named += cores
        parts.append(f"{k} {cores:.2f} cores")
    if "others" in a:
        other = (b["others"] - a["others"]) / dt
        parts.append(f"the load generators (the rest of this run) {(b['busy'] - a['busy']) / dt - named - other:.2f} cores")
        parts.append(f"other people's processes {other:.2f} cores")
    else:
        parts.append(f"everything else (load generators, other processes) {(b['busy'] - a['busy']) / dt - named:.2f} cores")
    print(f"CPU over the {dt:.1f} s measured: " + ", ".join(parts))


if __name__ == "__main__":
    if sys.argv[1] == "sample":
        sample(sys.argv[2], float(sys.argv[3]), sys.argv[4:])
    elif sys.argv[1] == "window":
        window(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))
    else:
        sys.exit(__doc__)
