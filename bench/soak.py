"""The soak test (issue #9): `make soak`, or `python -m bench.soak --duration 600`.

Mixed traffic at a steady rate for a long time through the gateway, as users
send it: plain, streamed, cached, rate-limited, and calls whose upstream fails.
It reports three figures, each with a target:

- errors of ours: any answer a scenario does not explain (a 5xx other than the
  failing upstream's, a 429 outside the rate-limited scenario, a broken or
  incomplete response, a missing Helicone-Id): target 0;
- memory growth of each daphne process, VmRSS at the end of the warm-up to the
  end of the run: target under 10 %;
- logs present out of requests sent, matched by Helicone-Id: target all, exact.

Setups (see bench/stack.py):

- ``scaled`` (the default): two daphne processes sharing PostgreSQL (database
  ``helicone_soak``, dropped and recreated each run) and Redis (db 3; nothing
  is flushed, the run uses its own stream key and org), and one
  ``manage.py run_log_writer``;
- ``embedded``: one daphne with a SQLite file and its in-process writer. Two
  processes would each have their own cache and rate-limit counters, which is
  not how the embedded setup is meant to be run.

``--database-url``/``--redis-url`` point the run at existing, migrated
databases instead (tests/reliability/test_soak.py runs 30 s against the test
database). Prints a report and writes JSON to bench/results/soak-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import stack
from .load import CHAT_BODY
from .stack import ROOT, MockProviderProcess, Pinning, Setup, proc_status

SOAK_DB = "helicone_soak"
SOAK_REDIS_URL = "redis://127.0.0.1:6379/3"
MEMORY_GROWTH_TARGET_PCT = 10.0

# One cycle of the mix; the rate is spread evenly over it.
MIX = ["plain", "streamed", "plain", "cached", "rate_limited", "plain", "streamed", "failing",
       "plain", "cached", "rate_limited", "plain", "streamed", "cached", "plain", "failing",
       "plain", "rate_limited", "streamed", "plain"]
STREAM_HEADERS = {"X-Mock-Chunks": "10", "X-Mock-Chunk-Delay-Ms": "10"}
# A few users share one small quota: a steady share of 429s.
RATE_POLICY = "20;w=10;u=user"
CACHED_PROMPTS = 5
# Every other failing call is an upstream error status, the others a reset connection.
FAILURES = [({"X-Mock-Status": "503"}, 503), ({"X-Mock-Fault": "reset"}, 502)]


@dataclass
class Sent:
    scenario: str
    server: int
    status: int = 0
    helicone_id: str = ""
    error: str = ""  # not empty: an error of ours
    cache: str = ""


@dataclass
class Soak:
    duration: float
    rate: float
    warmup: float
    urls: list[str]
    key: str
    sent: list[Sent] = field(default_factory=list)
    in_flight_max: int = 0

    def request(self, i: int) -> tuple[str, dict, dict, tuple[int, ...]]:
        """Scenario i of the run: (name, JSON body, headers, the statuses it explains)."""
        scenario = MIX[i % len(MIX)]
        body = {**CHAT_BODY, "messages": [{"role": "user", "content": f"soak {uuid.uuid4().hex}"}]}
        headers = {"Helicone-Auth": f"Bearer {self.key}", "Content-Type": "application/json"}
        expected: tuple[int, ...] = (200,)
        if scenario == "streamed":
            body["stream"] = True
            headers.update(STREAM_HEADERS)
        elif scenario == "cached":
            body["messages"] = [{"role": "user", "content": f"soak cached {i % CACHED_PROMPTS}"}]
            headers["Helicone-Cache-Enabled"] = "true"
        elif scenario == "rate_limited":
            headers.update({"Helicone-RateLimit-Policy": RATE_POLICY, "Helicone-User-Id": f"soak-{i % 3}"})
            expected = (200, 429)
        elif scenario == "failing":
            extra, status = FAILURES[(i // len(MIX)) % len(FAILURES)]
            headers.update(extra)
            expected = (status,)
        return scenario, body, headers, expected

    async def one(self, session, i: int) -> None:
        import aiohttp

        scenario, body, headers, expected = self.request(i)
        server = i % len(self.urls)
        sent = Sent(scenario, server)
        self.sent.append(sent)
        try:
            async with session.post(self.urls[server] + "/oai/v1/chat/completions", data=json.dumps(body),
                                    headers=headers) as response:
                data = await response.read()
                sent.status = response.status
                sent.helicone_id = response.headers.get("Helicone-Id", "")
                sent.cache = response.headers.get("Helicone-Cache", "")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            sent.error = f"{exc.__class__.__name__}: {exc}"[:200]
            return
        if sent.status not in expected:
            sent.error = f"status {sent.status}: {data[:200].decode('utf-8', 'replace')}"
        elif not sent.helicone_id:
            sent.error = "no Helicone-Id"
        elif sent.status == 200 and scenario == "streamed" and not data.rstrip().endswith(b"data: [DONE]"):
            sent.error = "stream ended before [DONE]"
        elif sent.status == 200 and scenario != "streamed" and b'"choices"' not in data:
            sent.error = "incomplete body"

    async def run(self, on_warm) -> None:
        """Requests at a steady rate (scheduled by the clock, not by answers) for `duration`."""
        import aiohttp

        connector = aiohttp.TCPConnector(limit=200)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            tasks: set[asyncio.Task] = set()
            started = time.monotonic()
            warm_noted = False
            for i in range(round(self.duration * self.rate)):
                at = started + i / self.rate
                if not warm_noted and at - started >= self.warmup:
                    on_warm()
                    warm_noted = True
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                task = asyncio.create_task(self.one(session, i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                self.in_flight_max = max(self.in_flight_max, len(tasks))
            if tasks:
                await asyncio.gather(*tasks)


def run_soak(setup_name: str = "scaled", duration: float = 600.0, rate: float = 60.0, warmup: float | None = None,
             database_url: str | None = None, redis_url: str | None = None, log=print) -> dict:
    """One soak run; returns the report (see report())."""
    warmup = min(60.0, duration / 3) if warmup is None else warmup
    workdir = Path(tempfile.mkdtemp(prefix="helicone-soak-"))
    pinning = Pinning(False)
    mock = MockProviderProcess(workdir, pinning)
    prepared = database_url is None
    if setup_name == "scaled" and database_url is None:
        database_url = f"postgres://postgres@127.0.0.1:5432/{SOAK_DB}"
        redis_url = redis_url or SOAK_REDIS_URL
    setup = Setup(setup_name, workdir, pinning, mock.url, database_url=database_url, redis_url=redis_url)
    stream_key = f"hc:logs:soak-{uuid.uuid4().hex[:10]}"
    setup.env.update(LOG_STREAM_KEY=stream_key, LOG_SPOOL_DIR=str(setup.workdir / "spool"))
    try:
        if prepared:
            log(f"preparing the {setup_name} database")
            _fresh_database(setup)
        tenant = setup.create_tenants(["soak"])["soak"]
        if setup_name == "scaled":
            setup.start_writer()
        daphnes = [setup.start_daphne(label=f"daphne{n}") for n in range(2 if setup_name == "scaled" else 1)]
        soak = Soak(duration, rate, warmup, [d.url for d in daphnes], tenant["key"])
        rss_warm: dict[int, int] = {}
        rss_series: list[dict] = []

        def on_warm() -> None:
            rss_warm.update({d.pid: proc_status(d.pid).get("VmRSS", 0) for d in daphnes})

        async def sample_rss() -> None:
            t0 = time.monotonic()
            while True:
                rss_series.append({"t": round(time.monotonic() - t0, 1),
                                   **{f"daphne{n}_mb": round(proc_status(d.pid).get("VmRSS", 0) / 1024, 1)
                                      for n, d in enumerate(daphnes)}})
                await asyncio.sleep(max(1.0, duration / 60))

        async def main() -> None:
            sampler = asyncio.create_task(sample_rss())
            await soak.run(on_warm)
            sampler.cancel()

        log(f"{setup_name}: {len(daphnes)} daphne process(es), {rate:g} req/s for {duration:g} s "
            f"(warm-up {warmup:.0f} s)")
        began = time.monotonic()
        asyncio.run(main())
        elapsed = time.monotonic() - began
        rss_end = {d.pid: proc_status(d.pid).get("VmRSS", 0) for d in daphnes}
        exits = {}
        log(f"sent {len(soak.sent)} requests in {elapsed:.1f} s; waiting for their logs")
        counts = setup.wait_for_logs(tenant["org_id"], len(soak.sent), timeout=max(120.0, duration / 2),
                                     settle=2.0, stalled=30.0)
        logged = setup.logged_ids(tenant["org_id"])
        for daphne in daphnes:
            exits[daphne.proc.name] = daphne.proc.stop()
        result = report(setup_name, soak, elapsed, logged, counts, daphnes, rss_warm, rss_end, rss_series, exits)
    finally:
        setup.stop_all()
        mock.stop()
        if redis_url or setup_name == "scaled":
            _forget_stream(setup.env.get("REDIS_URL", ""), stream_key)
    if result["passed"]:
        shutil.rmtree(workdir, ignore_errors=True)
    else:  # the processes' output, to find out why
        result["workdir"] = str(workdir)
    return result


def _fresh_database(setup: Setup) -> None:
    if setup.name == "scaled":
        import psycopg

        with psycopg.connect(stack.PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {SOAK_DB} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {SOAK_DB}")
    setup.manage("migrate", "--noinput", timeout=300)


def _forget_stream(url: str, key: str) -> None:
    if not url:
        return
    try:
        import redis

        redis.Redis.from_url(url).delete(key)
    except Exception:  # the report matters more than the cleanup
        pass


def report(setup_name, soak: Soak, elapsed, logged, counts, daphnes, rss_warm, rss_end, rss_series, exits) -> dict:
    ids = {s.helicone_id.replace("-", "") for s in soak.sent if s.helicone_id}
    without_id = sum(1 for s in soak.sent if not s.helicone_id)
    errors = [s for s in soak.sent if s.error]
    by_scenario: dict[str, dict] = {}
    for s in soak.sent:
        row = by_scenario.setdefault(s.scenario, {"sent": 0, "errors_of_ours": 0, "statuses": {}})
        row["sent"] += 1
        row["errors_of_ours"] += bool(s.error)
        row["statuses"][str(s.status)] = row["statuses"].get(str(s.status), 0) + 1
        if s.scenario == "cached":
            row["cache_hits"] = row.get("cache_hits", 0) + (s.cache == "HIT")
    memory = []
    for n, d in enumerate(daphnes):
        warm, end = rss_warm.get(d.pid, 0), rss_end.get(d.pid, 0)
        growth = round(100 * (end - warm) / warm, 2) if warm else None
        memory.append({"process": f"daphne{n}", "rss_warm_mb": round(warm / 1024, 1), "rss_end_mb": round(end / 1024, 1),
                       "growth_pct": growth})
    growth_max = max((m["growth_pct"] for m in memory if m["growth_pct"] is not None), default=None)
    missing = ids - logged
    unexpected = logged - ids
    result = {
        "setup": setup_name,
        "daphne_processes": len(daphnes),
        "duration_s": soak.duration,
        "elapsed_s": round(elapsed, 1),
        "rate_target": soak.rate,
        "rate_achieved": round(len(soak.sent) / elapsed, 1) if elapsed else 0,
        "warmup_s": soak.warmup,
        "in_flight_max": soak.in_flight_max,
        "requests_sent": len(soak.sent),
        "errors_of_ours": len(errors),
        "error_samples": sorted({f"{s.scenario}: {s.error}" for s in errors})[:10],
        "by_scenario": by_scenario,
        "memory": memory,
        "memory_growth_max_pct": growth_max,
        "rss_series": rss_series,
        "logs_present": len(ids & logged),
        "logs_missing": len(missing) + without_id,
        "logs_unexpected": len(unexpected),
        "log_rows": counts["rows"],
        "daphne_exit_codes": exits,
    }
    result["targets"] = {
        "errors_of_ours_zero": result["errors_of_ours"] == 0,
        "memory_growth_under_10_pct": growth_max is not None and growth_max < MEMORY_GROWTH_TARGET_PCT,
        "every_request_logged_once": result["logs_missing"] == 0 and result["logs_unexpected"] == 0
                                     and result["log_rows"] == len(soak.sent),
    }
    result["passed"] = all(result["targets"].values())
    return result


def render(result: dict) -> str:
    lines = [f"Soak: {result['setup']} setup, {result['daphne_processes']} daphne process(es), "
             f"{result['rate_achieved']} req/s over {result['elapsed_s']} s (target {result['rate_target']:g})"]
    lines.append(f"  {'scenario':<14}{'sent':>8}{'errors':>8}  statuses")
    for name, row in sorted(result["by_scenario"].items()):
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(row["statuses"].items()))
        hits = f" (cache hits {row['cache_hits']})" if "cache_hits" in row else ""
        lines.append(f"  {name:<14}{row['sent']:>8}{row['errors_of_ours']:>8}  {statuses}{hits}")
    mark = {True: "PASS", False: "MISS"}
    t = result["targets"]
    lines.append(f"  errors of ours: {result['errors_of_ours']} (target 0) {mark[t['errors_of_ours_zero']]}")
    for sample in result["error_samples"]:
        lines.append(f"    {sample}")
    for m in result["memory"]:
        lines.append(f"  {m['process']} RSS {m['rss_warm_mb']} MB after warm-up -> {m['rss_end_mb']} MB at the end: "
                     f"{m['growth_pct']:+} %")
    lines.append(f"  memory growth: {result['memory_growth_max_pct']} % max (target < {MEMORY_GROWTH_TARGET_PCT:g} %) "
                 f"{mark[t['memory_growth_under_10_pct']]}")
    lines.append(f"  logs present: {result['logs_present']} of {result['requests_sent']} sent "
                 f"({result['logs_missing']} missing, {result['logs_unexpected']} unexpected, "
                 f"{result['log_rows']} rows) {mark[t['every_request_logged_once']]}")
    if "workdir" in result:
        lines.append(f"  the processes' output is kept in {result['workdir']}")
    lines.append("PASS" if result["passed"] else "MISS")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=600.0, help="seconds of traffic (600)")
    p.add_argument("--rate", type=float, default=60.0, help="requests per second (60)")
    p.add_argument("--warmup", type=float, default=None, help="seconds before the memory baseline (min(60, duration/3))")
    p.add_argument("--setup", choices=("scaled", "embedded"), default="scaled")
    p.add_argument("--database-url", default=None, help="an existing, migrated database instead of a fresh one")
    p.add_argument("--redis-url", default=None, help=f"scaled: the Redis to use ({SOAK_REDIS_URL})")
    p.add_argument("--out", type=Path, default=None, help="JSON output path (default bench/results/soak-<time>.json)")
    args = p.parse_args(argv)
    snapshot = Path(tempfile.mkdtemp(prefix="helicone-soak-src-"))
    try:
        if args.database_url is None:
            # Child processes run a snapshot of the code: others may edit this tree during a long run.
            stack.snapshot_source(snapshot / "src")
        result = run_soak(args.setup, args.duration, args.rate, args.warmup, args.database_url, args.redis_url,
                          log=lambda message: print(message, file=sys.stderr, flush=True))
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)
    result["timestamp"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or ROOT / "bench" / "results" / f"soak-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    print(f"JSON: {out}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
