#!/usr/bin/env python3
"""Leader failover, measured from a client's side (tests/bench/postgres.sh).

usage: postgres_failover.py --bin BIN --db URL --admin-key FILE --kills K --logs DIR \
           --pids FILE --node DIR:PORT --node DIR:PORT --node DIR:PORT

Starts the nodes itself (`serve --data DIR --db URL --addr 127.0.0.1:PORT --advertise
http://127.0.0.1:PORT`), then K times: waits until one node leads and the others follow,
posts fresh envelopes to a surviving node (the two survivors in turn) for a random 0.2-1.0 s
so the leader is busy, sends SIGKILL to the leader between two of those posts, and goes on
posting a fresh envelope every 10 ms (one at a time, on a kept-alive connection, nothing
retried: 503s and refused connections just move on to the next envelope) until the first
201. Measured: SIGKILL to that 201 (the client's view), and SIGKILL to the first /healthz
`leader` answer of another node (polled every 50 ms in a second thread). Then the killed node
is restarted on its directory. Envelopes are `sponsor.registered` statements signed by the admin
with PyNaCl (tests/python/sign_and_post.py's signing), each with a new id; nothing is signed by
the server under test. Prints one JSON object. The nodes' PIDs are kept in --pids so the
calling script can stop them if this one dies; they are stopped (SIGTERM) at the end.
"""
import argparse
import base64
import datetime
import http.client
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from sign_and_post import PAYLOAD_TYPE, pae, read_private_key  # noqa: E402


class Node:
    def __init__(self, args, i, spec):
        self.i = i
        self.dir, port = spec.rsplit(":", 1)
        self.port = int(port)
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [args.bin, "serve", "--data", self.dir, "--db", args.db, "--addr", f"127.0.0.1:{self.port}",
                     "--advertise", self.url]
        self.log = os.path.join(args.logs, f"failover-node{i + 1}.log")
        self.proc = None

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log)

    def health(self, timeout=0.5):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            c.request("GET", "/healthz")
            r = c.getresponse()
            body = json.loads(r.read())
            c.close()
            return body
        except Exception:
            return None


def write_pids(path, nodes):
    with open(path, "w") as f:
        f.write(" ".join(str(n.proc.pid) for n in nodes if n.proc and n.proc.poll() is None) + "\n")


class Signer:
    def __init__(self, key_path, origin):
        self.name, self.keyid, self.key = read_private_key(key_path)
        self.origin = origin
        self.tag = "fo" + os.urandom(4).hex()
        self.n = 0

    def envelope(self):
        self.n += 1
        statement = {
            "ledger": self.origin,
            "id": f"{self.tag}-{self.n}",
            "actor": self.name,
            "issued_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "type": "sponsor.registered",
            "data": {"sponsor": f"{self.tag}-s{self.n}", "name": "failover probe"},
        }
        payload = json.dumps(statement).encode()
        sig = self.key.sign(pae(PAYLOAD_TYPE, payload)).signature
        return json.dumps({
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": self.keyid}],
        }).encode()


class Poster:
    """One kept-alive connection to one node; a new connection after any transport error."""

    def __init__(self, node):
        self.node = node
        self.conn = None

    def post(self, body):
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.node.port, timeout=10)
            self.conn.request("POST", "/v1/events", body=body, headers={"Content-Type": "application/json"})
            r = self.conn.getresponse()
            r.read()
            return r.status
        except Exception as e:
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return type(e).__name__


def wait_cluster(nodes, timeout=60):
    """Until one node leads and every other one follows; returns the leader."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        hs = [n.health() for n in nodes]
        roles = [h and h.get("role") for h in hs]
        if roles.count("leader") == 1 and roles.count("follower") == len(nodes) - 1:
            return nodes[roles.index("leader")]
        time.sleep(0.1)
    raise SystemExit(f"no stable cluster within {timeout}s: {[n.health() for n in nodes]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--admin-key", required=True)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--logs", required=True)
    ap.add_argument("--pids", required=True)
    ap.add_argument("--node", action="append", required=True)
    args = ap.parse_args()
    nodes = [Node(args, i, spec) for i, spec in enumerate(args.node)]
    kills = []
    try:
        for n in nodes:
            n.start()
        write_pids(args.pids, nodes)
        wait_cluster(nodes)
        c = http.client.HTTPConnection("127.0.0.1", nodes[0].port, timeout=5)
        c.request("GET", "/v1/log")
        origin = json.loads(c.getresponse().read())["origin"]
        signer = Signer(args.admin_key, origin)
        for k in range(args.kills):
            leader = wait_cluster(nodes)
            survivors = [n for n in nodes if n is not leader]
            target = survivors[k % len(survivors)]
            poster = Poster(target)
            # The target must take writes (forwarded to the leader) before the kill.
            deadline = time.time() + 30
            while poster.post(signer.envelope()) != 201:
                if time.time() > deadline:
                    raise SystemExit(f"node {target.i + 1} takes no writes before kill {k + 1}")
                time.sleep(0.05)
            warm_until = time.time() + random.uniform(0.2, 1.0)
            warm_ok = 0
            while time.time() < warm_until:
                warm_ok += poster.post(signer.envelope()) == 201
            led = {}

            def watch():
                while "t" not in led and time.monotonic() - t0 < 30:
                    for n in survivors:
                        h = n.health(timeout=0.2)
                        if h and h.get("role") == "leader":
                            led["t"] = time.monotonic() - t0
                            led["node"] = n.i + 1
                            return
                    time.sleep(0.05)

            leader.proc.send_signal(signal.SIGKILL)
            t0 = time.monotonic()
            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            statuses = {}
            first_201 = None
            while time.monotonic() - t0 < 60:
                status = poster.post(signer.envelope())
                if status == 201:
                    first_201 = time.monotonic() - t0
                    break
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                time.sleep(0.01)
            watcher.join(5)
            leader.proc.wait()
            size = (target.health() or {}).get("size")
            kills.append({
                "kill": k + 1,
                "killed_node": leader.i + 1,
                "posted_to": target.i + 1,
                "writes_before_kill": warm_ok,
                "first_201_s": round(first_201, 3) if first_201 is not None else None,
                "new_leader_s": round(led["t"], 3) if "t" in led else None,
                "new_leader": led.get("node"),
                "answers_before_201": statuses,
                "log_size": size,
            })
            print(json.dumps(kills[-1]), file=sys.stderr, flush=True)
            leader.start()
            write_pids(args.pids, nodes)
        wait_cluster(nodes)
    finally:
        for n in nodes:
            if n.proc and n.proc.poll() is None:
                n.proc.terminate()
        for n in nodes:
            if n.proc:
                try:
                    n.proc.wait(20)
                except subprocess.TimeoutExpired:
                    n.proc.kill()
        write_pids(args.pids, nodes)
    firsts = [k["first_201_s"] for k in kills if k["first_201_s"] is not None]
    leads = [k["new_leader_s"] for k in kills if k["new_leader_s"] is not None]
    print(json.dumps({
        "kills": len(kills),
        "without_201": len(kills) - len(firsts),
        "first_201_median_s": round(statistics.median(firsts), 3) if firsts else None,
        "first_201_max_s": max(firsts) if firsts else None,
        "first_201_min_s": min(firsts) if firsts else None,
        "new_leader_median_s": round(statistics.median(leads), 3) if leads else None,
        "new_leader_max_s": max(leads) if leads else None,
        "each": kills,
    }))


if __name__ == "__main__":
    main()
