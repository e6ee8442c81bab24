"""Ingest at line rate: `planeflow web` against a bare aiohttp handler, same load, same run.

    .venv/bin/python -m bench.ingest [--bodies 60000] [--runs 3]

Starts a real `redis-server`, `planeflow web` (its own process, as users run it) and a
bare aiohttp app that reads the body and answers 202, then drives each with `wrk`
(installed with apt-get when missing) at fixed arguments (`-t1 -c16 -d5s`), the two
servers one after the other, over thousands of distinct pre-signed Plane deliveries
(each for its own work item, so every one is stored and enqueued), after a 2 s run
against each that is not counted. Redis is flushed before each planeflow run, so every
body is new. Prints one line per run and, last,
one JSON line with the medians: rps, p50_ms, p99_ms, bare_rps, ratio_vs_bare, and the
accepted and duplicate counts of the median planeflow run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from app.embedded_redis import EmbeddedRedis
from app.plane.webhooks import signature

SECRET = "bench-secret"
PROJECT = "5f0c1d2e-0000-4000-8000-00000000de00"
STATE = "7414f69a-3380-4915-9503-d26fb7531c05"
WRK_ARGS = ["-t1", "-c16", "-d5s"]
WARMUP_ARGS = ["-t1", "-c16", "-d2s"]
FIXTURE = (
    Path(__file__).resolve().parents[1] / "tests/fixtures/plane/webhook_issue_updated_state.json"
)

BARE_APP = """
import sys
from aiohttp import web
from app.cli import new_event_loop  # the loop `planeflow web` runs on, for a fair match

async def handle(request):
    await request.read()
    return web.Response(status=202)

app = web.Application()
app.router.add_post("/webhooks/plane", handle)
web.run_app(
    app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None,
    loop=new_event_loop(),
)
"""

WRK_SCRIPT = """
local bodies, sigs, n, i = {}, {}, 0, 0
function init(args)
  for line in io.lines(args[1]) do
    local sig, body = line:match("^(%x+) (.*)$")
    n = n + 1
    bodies[n], sigs[n] = body, sig
  end
end
function request()
  i = i % n + 1
  return wrk.format("POST", "/webhooks/plane",
    {["Content-Type"] = "application/json", ["X-Plane-Signature"] = sigs[i]}, bodies[i])
end
"""


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    print("bench: installing wrk (apt-get)", file=sys.stderr)
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True)
    return shutil.which("wrk") or "wrk"


def write_bodies(path: Path, count: int) -> None:
    """Realistic deliveries (the recorded Plane body), each for its own work item."""
    template = json.loads(json.loads(FIXTURE.read_text())["delivery"]["raw_body"])
    template["data"]["project"] = PROJECT
    with path.open("w") as fh:
        for n in range(count):
            template["data"]["id"] = str(uuid.UUID(int=n + 1))
            template["data"]["sequence_id"] = n + 1
            template["data"]["updated_at"] = f"2026-11-25T10:{n // 60 % 60:02d}:{n % 60:02d}Z"
            raw = json.dumps(template)
            fh.write(f"{signature(SECRET, raw.encode())} {raw}\n")


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: server exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"bench: {url} not ready after {timeout_s}s")


def parse_ms(text: str) -> float:
    """wrk's latency text (`812.00us`, `3.21ms`, `1.02s`, `1.50m`) in milliseconds."""
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if found is None:
        raise SystemExit(f"bench: cannot read wrk latency {text!r}")
    value, unit = found.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def run_wrk(wrk: str, script: Path, data: Path, url: str, args: list[str] = WRK_ARGS) -> Run:
    out = subprocess.run(
        [wrk, *args, "--latency", "-s", str(script), url, "--", str(data)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    # The percentile rows of "Latency Distribution" (anchored: a "+/- Stdev" column
    # such as "72.50%" would otherwise match "50%" and read the next word)
    p50 = parse_ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = parse_ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Run(rps, p50, p99, requests, int(bad.group(1)) if bad else 0)


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bodies", type=int, default=60_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    wrk = ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="pf-bench-ingest-"))
    data, script = work / "bodies.txt", work / "bodies.lua"
    write_bodies(data, args.bodies)
    script.write_text(WRK_SCRIPT)
    (work / "projects.toml").write_text(
        f'[projects.bench]\nplane_project_id = "{PROJECT}"\nrepo = "{work}"\n'
        'work_item_prefix = "BENCH"\n'
    )
    store = EmbeddedRedis(work / "redis", require_binary=True).start()
    client = redis.Redis.from_url(store.url, decode_responses=True)
    web_port, bare_port = free_port(), free_port()
    env = {
        **os.environ,
        "ORCH_REDIS_URL": store.url,
        "ORCH_PROJECTS_FILE": str(work / "projects.toml"),
        "ORCH_PLANE_WEBHOOK_SECRET": SECRET,
        "ORCH_SPOOL_DIR": str(work / "spool"),
    }
    planeflow = shutil.which("planeflow", path=str(Path(sys.executable).parent)) or "planeflow"
    web = start(
        [planeflow, "--log-level", "WARNING", "web", "--port", str(web_port)], env, work / "web.log"
    )
    bare = start([sys.executable, "-c", BARE_APP, str(bare_port)], env, work / "bare.log")
    try:
        wait_ready(f"http://127.0.0.1:{web_port}/healthz", web)
        wait_ready(f"http://127.0.0.1:{bare_port}/", bare)
        # Not counted: a short run against each first (Python's adaptive interpreter, the
        # script's first load, the allocators' first growth), the same for both
        for url in (f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{bare_port}"):
            run_wrk(wrk, script, data, url, WARMUP_ARGS)
        ours: list[tuple[Run, int]] = []
        theirs: list[Run] = []
        for n in range(args.runs):
            client.flushall()
            run = run_wrk(wrk, script, data, f"http://127.0.0.1:{web_port}")
            accepted = int(client.xlen("pf:events"))
            ours.append((run, accepted))
            theirs.append(run_wrk(wrk, script, data, f"http://127.0.0.1:{bare_port}"))
            print(
                f"run {n + 1}: planeflow {run.rps:.0f} req/s p50 {run.p50_ms:.1f} ms "
                f"p99 {run.p99_ms:.1f} ms ({accepted} accepted, {run.non_2xx} non-2xx); "
                f"bare {theirs[-1].rps:.0f} req/s p99 {theirs[-1].p99_ms:.1f} ms",
                flush=True,
            )
    finally:
        stop(web)
        stop(bare)
        client.close()
        store.stop()
        shutil.rmtree(work, ignore_errors=True)
    median_run, accepted = sorted(ours, key=lambda r: r[0].rps)[len(ours) // 2]
    bare_rps = statistics.median(r.rps for r in theirs)
    rps = statistics.median(r.rps for r, _ in ours)
    print(
        json.dumps(
            {
                "rps": round(rps),
                "p50_ms": round(statistics.median(r.p50_ms for r, _ in ours), 2),
                "p99_ms": round(statistics.median(r.p99_ms for r, _ in ours), 2),
                "bare_rps": round(bare_rps),
                "ratio_vs_bare": round(rps / bare_rps, 3),
                "accepted": accepted,
                # wrk does not count requests still in flight when it stops; they were
                # stored all the same, so this can read a few below zero: shown as 0
                "duplicate": max(0, median_run.requests - accepted - median_run.non_2xx),
                "non_2xx": median_run.non_2xx,
                "wrk": " ".join(WRK_ARGS),
                "connections": 16,
            }
        )
    )


if __name__ == "__main__":
    main()
