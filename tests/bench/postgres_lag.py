#!/usr/bin/env python3
"""Follower lag, read off the event streams (tests/bench/postgres.sh).

usage: postgres_lag.py --from N --duration-s S --stream NAME=URL [--stream NAME=URL ...]

Opens `GET URL/v1/events/stream?from=N` on every node given, one thread each, for S seconds,
and for every record received computes the wall-clock time of its arrival here minus its
`received_at_ms` (the leader's clock when it took the submission; every node is on this
machine, so one clock). With two or more streams it also gives, per seq, how much later the
record reached each stream than the first one named (the leader): the replication part of the
lag alone. Prints one JSON object.
"""
import argparse
import http.client
import json
import threading
import time
import urllib.parse


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    i = min(len(s), max(1, -(-len(s) * p // 1))) - 1  # ceil(len * p), 1-based
    return round(s[int(i)], 2)


def summary(values):
    return {
        "n": len(values),
        "p50_ms": pct(values, 0.50),
        "p99_ms": pct(values, 0.99),
        "max_ms": round(max(values), 2) if values else None,
        "mean_ms": round(sum(values) / len(values), 2) if values else None,
    }


def follow(url, start, stop_at, out, errors):
    """Appends (seq, arrival_ms, received_at_ms) to out until stop_at (time.time())."""
    u = urllib.parse.urlsplit(url)
    try:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        conn.request("GET", f"/v1/events/stream?from={start}", headers={"Accept": "text/event-stream"})
        resp = conn.getresponse()
        if resp.status != 200:
            errors.append(f"{url}: HTTP {resp.status}")
            return
        while time.time() < stop_at:
            line = resp.fp.readline()
            if not line:
                errors.append(f"{url}: stream closed")
                return
            now_ms = time.time() * 1000.0
            if line.startswith(b"data:"):
                rec = json.loads(line[5:])
                out.append((rec["seq"], now_ms, rec["received_at_ms"]))
    except Exception as e:  # report, don't hide
        errors.append(f"{url}: {e!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--from", dest="start", type=int, required=True)
    ap.add_argument("--duration-s", type=float, required=True)
    ap.add_argument("--skip-s", type=float, default=2.0, help="records received in the first S seconds are not counted (setup, warm-up)")
    ap.add_argument("--stream", action="append", required=True, help="NAME=URL")
    args = ap.parse_args()
    streams = [s.split("=", 1) for s in args.stream]
    t_start = time.time()
    stop_at = t_start + args.duration_s
    results = {name: [] for name, _ in streams}
    errors = []
    threads = [threading.Thread(target=follow, args=(url, args.start, stop_at, results[name], errors), daemon=True)
               for name, url in streams]
    for t in threads:
        t.start()
    # The threads are daemons: whatever they are blocked in when the time is up ends with us.
    time.sleep(max(0.0, stop_at - time.time()))
    results = {name: list(v) for name, v in results.items()}
    counted_from_ms = (t_start + args.skip_s) * 1000.0
    report = {"errors": errors, "streams": {}}
    for name, _ in streams:
        lags = [arr - recv for (_, arr, recv) in results[name] if recv >= counted_from_ms]
        report["streams"][name] = summary(lags)
        if lags:
            seqs = [s for (s, _, recv) in results[name] if recv >= counted_from_ms]
            span_s = max(1e-9, (max(r for (_, _, r) in results[name]) - counted_from_ms) / 1000.0)
            report["streams"][name]["records_per_s"] = round(len(seqs) / span_s, 1)
    first = streams[0][0]
    arrival_first = {s: arr for (s, arr, recv) in results[first] if recv >= counted_from_ms}
    for name, _ in streams[1:]:
        behind = [arr - arrival_first[s] for (s, arr, recv) in results[name] if s in arrival_first]
        report["streams"][name]["behind_" + first] = summary(behind)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
