#!/usr/bin/env python3
"""Compaction with a replica dead for good, and its return by snapshot (specs/results.md).

A fresh 3-replica loopback cluster (`paxos-node cluster`, fsync on) with
`limits.snapshot_interval_slots = INTERVAL`; one follower is killed with `kill -9` and stays
down while `paxos-node bench` writes 100-byte values over 10,000 keys from 64 clients. Every
few seconds: slots applied at the leader, and each survivor's storage (WAL segments and
snapshot files) and RSS. Once WRITES slots are applied the dead replica restarts under the same
load: the time until it has applied what the leader had applied when it restarted, the
snapshot bytes it installed, and the cluster's write throughput during the transfer against
the throughput before it.

  bench/compaction.py [--writes N] [--interval SLOTS] [--port-base P]

`--interval 0` turns snapshots off: the anchor, where storage and memory grow with the log.
Needs a release build of paxos-node (built if missing). Every phase is bounded in time.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "paxos-node")
SAMPLE_SECS = 5
LOAD_SECS_MAX = 3600
CATCH_UP_SECS_MAX = 600


def http_json(url):
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.loads(response.read())


def metric(endpoint, name):
    try:
        with urllib.request.urlopen(f"{endpoint}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def status(endpoint):
    try:
        return http_json(f"{endpoint}/status")
    except OSError:
        return None


def storage_bytes(path):
    total = 0
    for entry in os.scandir(path):
        if entry.is_file():
            total += entry.stat().st_size
    return total


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def wait_for(predicate, limit, what):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    sys.exit(f"timed out after {limit} s waiting for {what}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=1_000_000)
    parser.add_argument("--interval", type=int, default=10_000)
    parser.add_argument("--port-base", type=int, default=17500)
    args = parser.parse_args()
    if not os.access(BIN, os.X_OK):
        subprocess.run(
            ["cargo", "build", "--release", "-p", "paxos-impl", "--bin", "paxos-node"],
            cwd=ROOT,
            check=True,
        )
    work = tempfile.mkdtemp(prefix="paxos-compaction-")
    data = os.path.join(work, "cluster")
    peer_port, client_port = args.port_base, args.port_base + 100
    endpoints = [f"http://127.0.0.1:{client_port + i}" for i in range(3)]
    cluster_cmd = [
        BIN, "cluster", "--nodes", "3", "--data-dir", data,
        "--peer-port", str(peer_port), "--client-port", str(client_port),
    ]
    children = []

    def start_cluster():
        out = open(os.path.join(work, "cluster.out"), "a")
        child = subprocess.Popen(cluster_cmd, stdout=out, stderr=out)
        children.append(child)
        return child

    def serve(i):
        log = open(os.path.join(data, f"node-{i}.log"), "a")
        child = subprocess.Popen(
            [BIN, "serve", "--config", os.path.join(data, "cluster.toml"), "--id", str(i),
             "--data-dir", os.path.join(data, f"node-{i}")],
            stdout=subprocess.DEVNULL, stderr=log,
        )
        children.append(child)
        return child

    def leader():
        for endpoint in endpoints:
            s = status(endpoint)
            if s and s["role"] == "leading":
                return s
        return None

    def stop(child):
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()

    try:
        # `paxos-node cluster` writes the configuration and the secret (and rewrites the
        # configuration whenever it starts); the limits are set in it, then the same replicas
        # start again as `paxos-node serve` processes from their (nearly empty) directories.
        cluster = start_cluster()
        wait_for(leader, 20, "a leader")
        stop(cluster)
        config = os.path.join(data, "cluster.toml")
        with open(config) as f:
            text = f.read()
        if "snapshot_interval_slots = 10000" not in text:
            sys.exit("the generated configuration has no default snapshot interval to replace")
        text = text.replace(
            "snapshot_interval_slots = 10000",
            f"snapshot_interval_slots = {args.interval}",
        )
        with open(config, "w") as f:
            f.write(text)
        for i in range(3):
            serve(i)
        lead = wait_for(leader, 20, "a leader")
        leader_id = lead["id"]
        survivors = [leader_id, (leader_id + 1) % 3]
        dead = (leader_id + 2) % 3
        pids = {s["id"]: s["pid"] for s in map(status, endpoints) if s}
        os.kill(pids[dead], signal.SIGKILL)
        print(f"interval {args.interval} slots; leader n{leader_id}; n{dead} killed for good")

        bench = subprocess.Popen(
            [BIN, "bench", "--endpoints", ",".join(endpoints), "--clients", "64",
             "--duration", str(LOAD_SECS_MAX), "--keys", "10000", "--value-size", "100"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        children.append(bench)
        header = ["writes"] + [f"n{i} storage MiB" for i in survivors] + [
            f"n{i} RSS MiB" for i in survivors]
        print(" | ".join(header))
        leader_endpoint = endpoints[leader_id]
        started = time.monotonic()
        rates = []
        last = (started, 0)
        while True:
            time.sleep(SAMPLE_SECS)
            s = status(leader_endpoint)
            if s is None or s["role"] != "leading":
                sys.exit("the leader changed during the load: rerun")
            now = time.monotonic()
            applied = s["applied"]
            rates.append((applied - last[1]) / (now - last[0]))
            last = (now, applied)
            row = [f"{applied:,}"]
            row += [f"{storage_bytes(os.path.join(data, f'node-{i}')) / 2**20:.1f}"
                    for i in survivors]
            row += [f"{rss_mib(pids[i]):.1f}" for i in survivors]
            print(" | ".join(row), flush=True)
            if applied >= args.writes:
                break
            if now - started > LOAD_SECS_MAX:
                sys.exit("the load did not reach the writes in time")
        before = sum(rates[-3:]) / len(rates[-3:])

        # The dead replica returns under the same load.
        restarted_at = time.monotonic()
        target = status(leader_endpoint)["applied"]
        serve(dead)
        endpoint = endpoints[dead]
        applied_at_restart = target

        def caught_up():
            s = status(endpoint)
            return s is not None and s["applied"] >= target

        wait_for(caught_up, CATCH_UP_SECS_MAX, f"n{dead} to apply {target} slots")
        caught_up_secs = time.monotonic() - restarted_at
        after = status(leader_endpoint)["applied"]
        during = (after - applied_at_restart) / caught_up_secs
        installed = metric(endpoint, "paxos_snapshots_installed_total")
        snapshot_bytes = metric(endpoint, "paxos_snapshot_bytes_written_total")
        def survivors_total(name):
            return sum(metric(endpoints[i], name) for i in survivors)

        asked = survivors_total("paxos_snapshots_sent_total")
        transfers = survivors_total("paxos_snapshot_transfers_total")
        coalesced = survivors_total("paxos_snapshot_sends_coalesced_total")
        bytes_sent = survivors_total("paxos_snapshot_bytes_sent_total")
        print(
            f"n{dead} restarted behind {target:,} slots: caught up in {caught_up_secs:.2f} s; "
            f"{installed:.0f} snapshot(s) installed, {snapshot_bytes / 2**20:.2f} MiB of "
            f"state written"
        )
        print(
            f"the survivors' cores sent {asked:.0f} Snapshot message(s): {transfers:.0f} "
            f"transfer(s) of {bytes_sent / 2**20:.2f} MiB in chunks, {coalesced:.0f} dropped "
            f"as copies of a transfer in progress; the surviving follower installed "
            f"{metric(endpoints[survivors[1]], 'paxos_snapshots_installed_total'):.0f}"
        )
        print(
            f"write throughput: {before:,.0f}/s before, {during:,.0f}/s during the catch-up "
            f"(ratio {during / before:.2f})"
        )
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.kill()
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
