"""The overhead benchmark (issue #8): `make bench`, or `python -m bench.run`.

In one run, on this machine: the mock provider alone, then the gateway under
daphne in each setup (embedded and scaled), the same requests, so overhead is
gateway minus direct from the same run. Prints a table with PASS/MISS against
the targets and writes everything as JSON under bench/results/.

    python -m bench.run                 # full run, both setups (a few minutes)
    python -m bench.run --smoke         # every scenario for a second, embedded only
    BENCH_SMOKE=1 python -m bench.run   # the same
    python -m bench.run --setups scaled --duration 5 --no-pinned-rows

Every scenario runs unpinned, as users run it: wrk, the aiohttp client, the mock
provider, daphne, PostgreSQL, Redis and the writers share all the cores. The
plain chat completion is measured a second time pinned (wrk and the mock on core
0, daphne on its own core), in the same run, as rows of their own; the targets
are judged on the unpinned rows. In each setup a SIGKILL run kills daphne under
load and checks that every answered request is logged exactly once.

Adding a plain-request scenario is one entry in PLAIN_SCENARIOS: the headers it
sends through the gateway, and how to tell from a probe whether the gateway
supports it yet (rows for an unsupported one print "n/a: not built yet").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from . import load, stack
from .stack import (
    PG_BENCH_DB,
    PY,
    REDIS_BENCH_URL,
    ROOT,
    CpuMeter,
    MockProviderProcess,
    Pinning,
    Proc,
    RssSampler,
    Setup,
    free_port,
    other_load,
    wait_for_port,
)

NOT_BUILT = "n/a: not built yet"
UPSTREAM_AUTH = {"Authorization": "Bearer sk-bench-upstream-key"}


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass
class Config:
    smoke: bool
    setups: list[str]
    duration: float  # seconds per measured wrk run
    warmup: float  # seconds of wrk warm-up before each measured run
    concurrencies: tuple[int, ...]
    ttft_requests: int  # sequential streams for TTFT
    ttft_chunks: int
    ttft_chunk_delay_ms: int
    many_streams: int  # the "1,000 concurrent slow streams" scenario
    many_chunks: int
    many_chunk_delay_ms: int
    many_ramp_s: float
    writer_rows: int
    access_log_check: bool
    pinned_rows: bool  # the plain chat once more with daphne pinned to its own core
    sigkill_clients: int
    sigkill_after_s: float  # seconds of load before daphne is killed
    out: Path | None

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> "Config":
        p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
        p.add_argument("--smoke", action="store_true", default=os.environ.get("BENCH_SMOKE", "") not in ("", "0"),
                       help="every scenario very briefly, embedded setup only (also BENCH_SMOKE=1)")
        p.add_argument("--setups", default=os.environ.get("BENCH_SETUPS", ""),
                       help="comma list of embedded,scaled (default: both; smoke: embedded)")
        p.add_argument("--duration", type=float, default=None, help="seconds per measured wrk run (10)")
        p.add_argument("--warmup", type=float, default=None, help="seconds of warm-up before each wrk run (2)")
        p.add_argument("--streams", type=int, default=None, help="concurrent slow streams (1000; smoke 20)")
        p.add_argument("--writer-rows", type=int, default=None, help="records for the writer run (50000)")
        p.add_argument("--no-access-log-check", action="store_true",
                       help="skip the daphne -v 1 (access log on) comparison runs")
        p.add_argument("--pinned-rows", dest="pinned_rows", action="store_true", default=None,
                       help="also measure the plain chat with daphne pinned to its own core (the default, "
                            "except with --smoke; also BENCH_PIN=1)")
        p.add_argument("--no-pinned-rows", "--no-pin", dest="pinned_rows", action="store_false",
                       help="skip the pinned rows (also BENCH_PIN=0); every scenario runs unpinned either way")
        p.add_argument("--sigkill-after", type=float, default=None,
                       help="seconds of load before daphne is killed in the SIGKILL run (2; smoke 1)")
        p.add_argument("--out", type=Path, default=None, help="JSON output path (default bench/results/<time>.json)")
        a = p.parse_args(argv)
        smoke = a.smoke
        pinned_rows = a.pinned_rows
        if pinned_rows is None:
            pin_env = os.environ.get("BENCH_PIN", "")
            pinned_rows = pin_env != "0" if pin_env else not smoke
        setups = [s for s in a.setups.split(",") if s] or (["embedded"] if smoke else ["embedded", "scaled"])
        for s in setups:
            if s not in ("embedded", "scaled"):
                p.error(f"unknown setup {s!r}")
        return cls(
            smoke=smoke,
            setups=setups,
            duration=a.duration if a.duration is not None else (1.0 if smoke else 10.0),
            warmup=a.warmup if a.warmup is not None else (1.0 if smoke else 2.0),
            concurrencies=(1, 32),
            ttft_requests=20 if smoke else 200,
            ttft_chunks=10,
            ttft_chunk_delay_ms=2,
            many_streams=a.streams if a.streams is not None else (20 if smoke else 1000),
            many_chunks=20 if smoke else 200,
            many_chunk_delay_ms=50,
            many_ramp_s=0.2 if smoke else 1.0,
            writer_rows=a.writer_rows if a.writer_rows is not None else (1000 if smoke else 50_000),
            access_log_check=not a.no_access_log_check,
            pinned_rows=pinned_rows,
            sigkill_clients=16,
            sigkill_after_s=a.sigkill_after if a.sigkill_after is not None else (1.0 if smoke else 2.0),
            out=a.out,
        )


# --------------------------------------------------------------------------------------------
# Scenarios


def _has_cache_header(responses: list[dict]) -> bool:
    return any("helicone-cache" in r for r in responses)


def _has_ratelimit_header(responses: list[dict]) -> bool:
    return any("ratelimit" in name for r in responses for name in r)


@dataclass
class PlainScenario:
    """Non-streamed chat completions driven by wrk, at each concurrency."""

    key: str
    label: str
    gateway_headers: dict[str, str] = field(default_factory=dict)
    # Given the response headers of two identical probe requests: does the gateway support it?
    supported: Callable[[list[dict]], bool] | None = None
    daphne_verbosity: int | None = None  # None: as `make serve` runs it (-v 0, no access log)
    pinned: bool = False  # wrk and the mock on core 0, daphne on its own core (Pinning)
    # Sent through the gateway before the probe, with the scenario's tenant (fills a cache);
    # returns how many requests it sent.
    prepare: Callable[[str, dict, int], int] | None = None
    c1_only: bool = False  # measured at c=1 only (an overhead, not a throughput)


# The semantic cache's rows: every request is an exact miss (read-only, so never stored), then
# searches a scope of 1,000 stored questions; the "hit" row's scope holds a paraphrase of it.
SEMANTIC_READ = {"Helicone-Cache-Read": "true", "Helicone-Cache-Semantic": "true"}
SEMANTIC_SCOPE_SIZE = 1000


def _ask_with_text(url: str, headers: dict, text: str) -> dict[str, str]:
    body = {**load.CHAT_BODY, "messages": [*load.CHAT_BODY["messages"][:-1], {"role": "user", "content": text}]}
    return load.probe(url, {**headers, "Helicone-Cache-Enabled": "true", "Helicone-Cache-Semantic": "true"},
                      body, times=1)[0]


def _fill_scope(url: str, headers: dict, size: int) -> int:
    for i in range(size):
        _ask_with_text(url, headers, f"Summarise incident report {i} from the benchmark in one short sentence.")
    time.sleep(2)  # entries are stored in the background
    return size


def _fill_scope_with_paraphrase(url: str, headers: dict, size: int) -> int:
    _fill_scope(url, headers, size)
    _ask_with_text(url, headers, load.CHAT_BODY["messages"][-1]["content"].lower().rstrip("."))
    time.sleep(1)
    return size + 1


def _is_semantic_hit(responses: list[dict]) -> bool:
    return all(r.get("helicone-cache-match") == "semantic" for r in responses)


def _is_semantic_miss(responses: list[dict]) -> bool:
    return all(r.get("helicone-cache") == "MISS" for r in responses)


PLAIN_SCENARIOS = [
    PlainScenario("plain", "chat completion"),
    PlainScenario("cache_hit", "chat, cache hit (Helicone-Cache-Enabled)",
                  {"Helicone-Cache-Enabled": "true"}, supported=_has_cache_header),
    PlainScenario("cache_miss", "chat, exact cache miss (Helicone-Cache-Read)",
                  {"Helicone-Cache-Read": "true"}, supported=_has_cache_header, c1_only=True),
    PlainScenario("semantic_miss", f"chat, semantic miss ({SEMANTIC_SCOPE_SIZE} entries searched)",
                  SEMANTIC_READ, supported=_is_semantic_miss, prepare=_fill_scope, c1_only=True),
    PlainScenario("semantic_hit", f"chat, semantic hit ({SEMANTIC_SCOPE_SIZE} entries searched)",
                  SEMANTIC_READ, supported=_is_semantic_hit, prepare=_fill_scope_with_paraphrase, c1_only=True),
    PlainScenario("ratelimited", "chat, under a rate-limit policy",
                  {"Helicone-RateLimit-Policy": "100000;w=60"},
                  supported=lambda rs: _has_ratelimit_header(rs)),
]
ACCESS_LOG_ON = PlainScenario("plain_access_log", "chat completion, daphne -v 1 (access log on)",
                              daphne_verbosity=1)
# The second row: the same requests with daphne on a core of its own (not judged against the targets).
PINNED = PlainScenario("plain_pinned", "chat, pinned: daphne on its own core", pinned=True)
PINNED_DIRECT_LABEL = "chat, mock alone, pinned (mock + wrk: core 0)"
# settings.LOG_STREAM_KEY's default: the stream the scaled setup's daphne appends to.
LOG_STREAM = "hc:logs"


def row_id(setup: str, scenario: str, concurrency: int | None = None) -> str:
    return f"{setup}/{scenario}" + (f"/c{concurrency}" if concurrency is not None else "")


# --------------------------------------------------------------------------------------------
# The run


class Bench:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.rows: dict[str, dict] = {}
        self.notes: list[str] = []
        self.started = time.monotonic()
        self.current_setup: Setup | None = None

    def log(self, message: str) -> None:
        print(f"[bench {time.monotonic() - self.started:6.1f}s] {message}", flush=True)

    def add(self, row: dict) -> dict:
        self.rows[row["id"]] = row
        return row

    # -- wrk -----------------------------------------------------------------------------------
    def wrk(self, workdir: Path, name: str, url: str, headers: dict, concurrency: int,
            server_pid: int | None = None, pinning: Pinning | None = None) -> tuple[dict, dict]:
        """Warm-up then measured wrk run; returns (measured, warm-up). With `server_pid`, the
        measured run also reports that process's CPU use, and how busy the machine was.
        `pinning` (default: none) places wrk."""
        script = load.wrk_script(workdir / f"{name}.lua", load.CHAT_BODY,
                                 {"Content-Type": "application/json", **headers})
        pinning = pinning or self.pinning
        wrap = lambda cmd: pinning.wrap(cmd, pinning.load)  # noqa: E731
        warm = load.run_wrk(url, script, concurrency, self.cfg.warmup, wrap)
        meter = CpuMeter(server_pid, self.our_pids())
        measured = load.run_wrk(url, script, concurrency, self.cfg.duration, wrap)
        measured["cpu"] = meter.finish(measured["requests"])
        return measured, warm

    def our_pids(self) -> list[int]:
        pids = [self.mock.proc.pid]
        if self.current_setup is not None:
            pids += [p.pid for p in self.current_setup.procs]
        return pids

    @staticmethod
    def latency_fields(m: dict) -> dict:
        out = {**{k: m[k] for k in ("p50_ms", "p95_ms", "p99_ms", "rps", "requests", "errors")}, **m["cpu"]}
        if out.get("gateway_cpu_ms_per_request"):
            # What one core would serve if the server had it to itself: an estimate, for runs
            # disturbed by other work (see other_cpu_pct), never used for PASS/MISS.
            out["cpu_bound_rps_estimate"] = round(1000 / out["gateway_cpu_ms_per_request"], 1)
        return out

    def overhead(self, m: dict, concurrency: int, direct_scenario: str = "plain") -> dict:
        direct = self.rows.get(row_id("direct", direct_scenario, concurrency))
        if not direct or direct.get("status") != "ok":
            return {}
        out = {}
        for pct in ("p50", "p95", "p99"):
            d, g = direct[f"{pct}_ms"], m[f"{pct}_ms"]
            out[f"overhead_{pct}_ms"] = round(g - d, 3)
            out[f"ratio_{pct}"] = round(g / d, 2) if d else None
        out["rps_ratio"] = round(m["rps"] / direct["rps"], 3) if direct["rps"] else None
        return out

    # -- direct to the mock provider -------------------------------------------------------------
    def run_direct(self) -> None:
        url = self.mock.url + "/v1/chat/completions"
        workdir = self.workdir / "direct"
        workdir.mkdir(exist_ok=True)
        for c in self.cfg.concurrencies:
            self.log(f"direct: wrk c={c}")
            m, _ = self.wrk(workdir, f"direct-c{c}", url, UPSTREAM_AUTH, c, self.mock.proc.pid)
            self.add({"id": row_id("direct", "plain", c), "setup": "direct", "scenario": "plain",
                      "label": "chat completion (mock provider alone)", "concurrency": c, "status": "ok",
                      **self.latency_fields(m), "wrk": m})
        if self.pinned is not None:
            # The floor of the pinned rows: the same placement of wrk and the mock, so their
            # overhead compares like with like.
            with self.pinned.place(self.mock.proc.pid, self.pinned.load):
                for c in self.cfg.concurrencies:
                    self.log(f"direct: wrk c={c}, pinned (wrk and the mock on CPU {self.pinned.load})")
                    m, _ = self.wrk(workdir, f"direct-pinned-c{c}", url, UPSTREAM_AUTH, c, self.mock.proc.pid,
                                    self.pinned)
                    self.add({"id": row_id("direct", PINNED.key, c), "setup": "direct", "scenario": PINNED.key,
                              "label": PINNED_DIRECT_LABEL, "concurrency": c, "status": "ok", "pinned": True,
                              **self.latency_fields(m), "wrk": m})
        self.run_bare_proxy(workdir)
        self.log("direct: sequential streams (TTFT)")
        run = load.sequential_streams(url, self.stream_headers(UPSTREAM_AUTH), load.CHAT_BODY,
                                      self.cfg.ttft_requests)
        self.add({"id": row_id("direct", "stream_ttft"), "setup": "direct", "scenario": "stream_ttft",
                  "label": self.ttft_label(), "status": "ok", **run.summary()})
        self.log(f"direct: {self.cfg.many_streams} concurrent slow streams (checks the client keeps up)")
        meter = CpuMeter(self.mock.proc.pid, self.our_pids())
        run = load.concurrent_streams(url, self.many_headers(UPSTREAM_AUTH), load.CHAT_BODY, self.cfg.many_streams,
                                      self.cfg.many_ramp_s, timeout=self.many_timeout())
        self.add({"id": row_id("direct", "many_streams"), "setup": "direct", "scenario": "many_streams",
                  "label": self.many_label(), "status": "ok", **run.summary(), "mock_cpu": meter.finish()})

    def run_bare_proxy(self, workdir: Path) -> None:
        """Reference rows: the thinnest ASGI proxy under daphne (bench/bare_proxy.py) on this machine."""
        port = free_port()
        env = dict(os.environ, UPSTREAM_URL=self.mock.url, PYTHONUNBUFFERED="1")
        proc = Proc("bare proxy", self.pinning.wrap(
            [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "-v", "0", "bench.bare_proxy:app"],
            self.pinning.gateway), env, workdir / "bare_proxy.log")
        try:
            wait_for_port(port, proc.proc)
            for c in self.cfg.concurrencies:
                self.log(f"reference: bare ASGI proxy under daphne, wrk c={c}")
                m, _ = self.wrk(workdir, f"bare-c{c}", f"http://127.0.0.1:{port}/oai/v1/chat/completions",
                                UPSTREAM_AUTH, c, proc.pid)
                self.add({"id": row_id("reference", "bare_proxy", c), "setup": "reference",
                          "scenario": "bare_proxy", "concurrency": c, "status": "ok",
                          "label": "bare ASGI proxy under daphne -v 0 (floor)",
                          **self.latency_fields(m), **self.overhead(m, c), "wrk": m})
        finally:
            proc.stop()

    def stream_headers(self, base: dict) -> dict:
        return {**base, "X-Mock-Chunks": str(self.cfg.ttft_chunks),
                "X-Mock-Chunk-Delay-Ms": str(self.cfg.ttft_chunk_delay_ms)}

    def many_headers(self, base: dict) -> dict:
        return {**base, "X-Mock-Chunks": str(self.cfg.many_chunks),
                "X-Mock-Chunk-Delay-Ms": str(self.cfg.many_chunk_delay_ms)}

    def many_timeout(self) -> float:
        return self.cfg.many_chunks * self.cfg.many_chunk_delay_ms / 1000 * 6 + 60

    def ttft_label(self) -> str:
        return (f"stream, sequential x{self.cfg.ttft_requests} "
                f"({self.cfg.ttft_chunks} chunks, {self.cfg.ttft_chunk_delay_ms} ms apart)")

    def many_label(self) -> str:
        return (f"{self.cfg.many_streams} concurrent streams ({self.cfg.many_chunks} chunks, "
                f"{self.cfg.many_chunk_delay_ms} ms apart)")

    # -- one setup through the gateway -----------------------------------------------------------
    def run_setup(self, name: str) -> None:
        setup = Setup(name, self.workdir, self.pinning, self.mock.url)
        self.current_setup = setup
        try:
            self.log(f"{name}: fresh database, migrate")
            setup.prepare()
            tenants = [f"{s.key}_c{c}" for s in PLAIN_SCENARIOS for c in self.concurrencies(s)]
            if self.access_log_check(name):
                tenants += [f"{ACCESS_LOG_ON.key}_c{c}" for c in self.cfg.concurrencies]
            if self.pinned is not None:
                tenants += [f"{PINNED.key}_c{c}" for c in self.cfg.concurrencies]
            tenants += ["stream_ttft", "many_streams", "sigkill", "writer"]
            self.tenants = setup.create_tenants(tenants)
            self.writer_proc = None
            if name == "scaled":
                self.log("scaled: starting manage.py run_log_writer")
                self.writer_proc = setup.start_writer()
            daphne = setup.start_daphne()
            self.log(f"{name}: daphne pid {daphne.pid} on {daphne.url}")
            # The cache rows at c=1 last (the exact miss, then the semantic cache's): the memory the
            # embedder takes would count in the streams' RSS, and the exact miss row's RSS is the
            # baseline of what the semantic rows add.
            first = [s for s in PLAIN_SCENARIOS if not s.c1_only]
            for scenario in first:
                self.guard(lambda: self.run_plain(setup, daphne, scenario), name, scenario.key,
                           self.concurrencies(scenario))
            self.guard(lambda: self.run_ttft(setup, daphne), name, "stream_ttft")
            self.guard(lambda: self.run_many(setup, daphne), name, "many_streams")
            for scenario in [s for s in PLAIN_SCENARIOS if s not in first]:
                self.guard(lambda: self.run_plain(setup, daphne, scenario), name, scenario.key,
                           self.concurrencies(scenario))
            daphne.proc.stop()
            setup.procs.remove(daphne.proc)
            if self.pinned is not None:
                pinned = setup.start_daphne(label="daphne-pinned", pinning=self.pinned)
                self.log(f"{name}: daphne pid {pinned.pid} pinned to CPU {self.pinned.gateway}")
                with self.pinned.place(self.mock.proc.pid, self.pinned.load):
                    self.guard(lambda: self.run_plain(setup, pinned, PINNED), name, PINNED.key,
                               self.cfg.concurrencies)
                pinned.proc.stop()
                setup.procs.remove(pinned.proc)
            if self.access_log_check(name):
                quiet = setup.start_daphne(verbosity=1, label="daphne-v1")
                self.log(f"{name}: daphne -v 1 pid {quiet.pid}")
                self.guard(lambda: self.run_plain(setup, quiet, ACCESS_LOG_ON), name, ACCESS_LOG_ON.key,
                           self.cfg.concurrencies)
                quiet.proc.stop()
                setup.procs.remove(quiet.proc)
            self.guard(lambda: self.run_sigkill(setup), name, "sigkill")
            setup.stop_all()  # the writer too: the writer run measures on an idle machine
            self.guard(lambda: self.run_writer(setup), name, "writer")
        finally:
            setup.stop_all()

    def access_log_check(self, setup: str) -> bool:
        """The access-log comparison runs in one setup (the last), to keep the run short."""
        return self.cfg.access_log_check and setup == self.cfg.setups[-1]

    def guard(self, fn, setup: str, scenario: str, concurrencies=(None,)) -> None:
        """Run a scenario; a failure becomes an error row instead of ending the whole run."""
        try:
            fn()
        except Exception as exc:
            traceback.print_exc()
            for c in concurrencies:
                rid = row_id(setup, scenario, c)
                if rid not in self.rows:
                    self.add({"id": rid, "setup": setup, "scenario": scenario, "concurrency": c,
                              "status": f"error: {exc.__class__.__name__}: {exc}"[:300]})

    def gateway_headers(self, tenant: str) -> dict:
        return {**UPSTREAM_AUTH, "Helicone-Auth": f"Bearer {self.tenants[tenant]['key']}"}

    def concurrencies(self, scenario: PlainScenario) -> tuple[int, ...]:
        return (self.cfg.concurrencies[0],) if scenario.c1_only else tuple(self.cfg.concurrencies)

    def run_plain(self, setup: Setup, daphne, scenario: PlainScenario) -> None:
        url = daphne.url + "/oai/v1/chat/completions"
        probe_tenant = f"{scenario.key}_c{self.cfg.concurrencies[0]}"
        headers = {**self.gateway_headers(probe_tenant), **scenario.gateway_headers}
        prepared = 0
        if scenario.prepare is not None:
            for c in self.concurrencies(scenario):
                self.log(f"{setup.name}: {scenario.key} c={c}: preparing")
                prepared = scenario.prepare(url, self.gateway_headers(f"{scenario.key}_c{c}"),
                                            20 if self.cfg.smoke else SEMANTIC_SCOPE_SIZE)
        responses = load.probe(url, headers, load.CHAT_BODY, times=2)
        statuses = [r[":status"] for r in responses]
        supported = scenario.supported is None or scenario.supported(responses)
        probe_info = {"probe_statuses": statuses,
                      "probe_headers": sorted(k for k in responses[-1] if k.startswith(("helicone", "ratelimit")))}
        for c in self.concurrencies(scenario):
            rid = row_id(setup.name, scenario.key, c)
            base = {"id": rid, "setup": setup.name, "scenario": scenario.key, "label": scenario.label,
                    "concurrency": c, **probe_info}
            if not supported:
                self.add({**base, "status": NOT_BUILT})
                continue
            if any(s != "200" for s in statuses):
                raise RuntimeError(f"probe of {scenario.key} answered {statuses}")
            tenant = f"{scenario.key}_c{c}"
            headers = {**self.gateway_headers(tenant), **scenario.gateway_headers}
            self.log(f"{setup.name}: {scenario.key} wrk c={c}")
            m, warm = self.wrk(setup.workdir, f"{scenario.key}-c{c}", url, headers, c, daphne.pid,
                               self.pinned if scenario.pinned else None)
            # Probe requests (sent with the first tenant) and the preparing ones count as sent too.
            probes = len(responses) if tenant == probe_tenant else 0
            sent = m["requests"] + warm["requests"] + probes + prepared
            sent_ok = m["completed_ok"] + warm["completed_ok"] + probes
            counts = setup.wait_for_logs(self.tenants[tenant]["org_id"], sent)
            logged = {
                "sent": sent, "sent_ok": sent_ok, **counts,
                # Requests in flight when wrk stops are cut off; the gateway logs them too (as cancelled,
                # or as complete if it had already answered), so rows may exceed sent by up to c per run.
                "extra_rows": counts["rows"] - sent,
                "all_logged": counts["rows"] >= sent and counts["ok"] >= sent_ok,
            }
            floor = PINNED.key if scenario.pinned else "plain"
            self.add({**base, "status": "ok", "pinned": scenario.pinned, **self.latency_fields(m),
                      **self.overhead(m, c, floor), "logged": logged,
                      "daphne_rss_mb": round(stack.proc_status(daphne.pid).get("VmRSS", 0) / 1024, 1),
                      "wrk": m, "wrk_warmup": warm})

    def run_ttft(self, setup: Setup, daphne) -> None:
        self.log(f"{setup.name}: sequential streams (TTFT)")
        tenant = self.tenants["stream_ttft"]
        run = load.sequential_streams(daphne.url + "/oai/v1/chat/completions",
                                      self.stream_headers(self.gateway_headers("stream_ttft")), load.CHAT_BODY,
                                      self.cfg.ttft_requests)
        summary = run.summary()
        direct = self.rows.get(row_id("direct", "stream_ttft"), {})
        overhead = {}
        for k in ("ttft_p50_ms", "ttft_p95_ms", "total_p50_ms", "total_p95_ms"):
            if direct.get(k) is not None and summary.get(k) is not None:
                overhead["overhead_" + k] = round(summary[k] - direct[k], 3)
                overhead["ratio_" + k.removesuffix("_ms")] = round(summary[k] / direct[k], 2) if direct[k] else None
        warmup = 5  # sequential_streams' warm-up streams are logged too
        logged = self.check_ids(setup, tenant["org_id"], run, warmup)
        self.add({"id": row_id(setup.name, "stream_ttft"), "setup": setup.name, "scenario": "stream_ttft",
                  "label": self.ttft_label(), "status": "ok", **summary, **overhead, "logged": logged})

    def run_many(self, setup: Setup, daphne) -> None:
        self.log(f"{setup.name}: {self.cfg.many_streams} concurrent slow streams")
        tenant = self.tenants["many_streams"]
        sampler = RssSampler(daphne.pid)
        sampler.start()
        meter = CpuMeter(daphne.pid, self.our_pids())
        run = load.concurrent_streams(daphne.url + "/oai/v1/chat/completions",
                                      self.many_headers(self.gateway_headers("many_streams")), load.CHAT_BODY,
                                      self.cfg.many_streams, self.cfg.many_ramp_s, timeout=self.many_timeout())
        rss = sampler.finish()
        rss.update(meter.finish())
        logged = self.check_ids(setup, tenant["org_id"], run, 0)
        self.add({"id": row_id(setup.name, "many_streams"), "setup": setup.name, "scenario": "many_streams",
                  "label": self.many_label(), "status": "ok", **run.summary(), **rss, "logged": logged,
                  "nominal_stream_s": self.cfg.many_chunks * self.cfg.many_chunk_delay_ms / 1000})

    def check_ids(self, setup: Setup, org_id: int, run: load.StreamRun, extra: int) -> dict:
        """Every stream the client saw is logged under the Helicone-Id it was given."""
        expected = {r.helicone_id.replace("-", "") for r in run.results if r.helicone_id}
        counts = setup.wait_for_logs(org_id, len(run.results) + extra)
        ids = setup.logged_ids(org_id)
        missing = expected - ids
        return {"sent": len(run.results) + extra, "with_helicone_id": len(expected), **counts,
                "missing_ids": len(missing),
                "all_logged": not missing and len(expected) == len(run.results) and
                counts["rows"] >= len(run.results) + extra}

    def run_sigkill(self, setup: Setup) -> None:
        """Kill daphne with SIGKILL under load; a fresh daphne on the same journal, database and
        stream, sent no requests, must see every answered request written, each exactly once."""
        clients, after = self.cfg.sigkill_clients, self.cfg.sigkill_after_s
        org = self.tenants["sigkill"]["org_id"]
        victim = setup.start_daphne(label="daphne-sigkill")
        self.log(f"{setup.name}: SIGKILL run: {clients} clients on daphne pid {victim.pid}, kill after {after:g} s")
        writer_recovered = _recovered(self.writer_proc)
        run = load.load_until_kill(victim.url + "/oai/v1/chat/completions", self.gateway_headers("sigkill"),
                                   load.CHAT_BODY, clients, after, lambda: os.kill(victim.pid, signal.SIGKILL))
        victim.proc.proc.wait(10)
        # What the database holds at the kill: the rest is in the journal (or, scaled, the stream).
        at_kill = setup.rows_per_id(org)
        answered = {h.replace("-", "") for h in run.answered}
        journal_at_kill = _journal_records(setup.workdir / "var" / "journal")
        stream_at_kill = None
        if setup.name == "scaled":
            import redis

            stream_at_kill = redis.Redis.from_url(REDIS_BENCH_URL).xlen(LOG_STREAM)
        victim.proc.stop()
        setup.procs.remove(victim.proc)

        # A fresh daphne, same environment; no request is sent to it. Scaled, run_log_writer looks at
        # the journals every 5 s, and claims stream entries a dead consumer read only after 30 s idle.
        limit = 60.0 + (30.0 if setup.name == "scaled" else 0.0)
        t0 = time.monotonic()
        fresh = setup.start_daphne(label="daphne-restarted")
        self.log(f"{setup.name}: killed; {len(answered & at_kill.keys())}/{len(answered)} answered requests written "
                 f"at the kill; fresh daphne pid {fresh.pid}, waiting up to {limit:g} s for the rest")
        recovered_s = None
        while True:
            per_id = setup.rows_per_id(org)
            if answered <= per_id.keys():
                recovered_s = round(time.monotonic() - t0, 2)
                break
            if time.monotonic() - t0 > limit:
                break
            time.sleep(0.2)
        time.sleep(1.0)  # a late second write of an id would show now
        per_id = setup.rows_per_id(org)
        fresh_recovered = _recovered(fresh.proc)
        fresh.proc.stop()
        setup.procs.remove(fresh.proc)

        found = answered & per_id.keys()
        exactly_once = sum(1 for i in answered if per_id.get(i) == 1)
        duplicates = sum(n - 1 for n in per_id.values() if n > 1)
        recovered_by = {"daphne (restarted)": fresh_recovered}
        if self.writer_proc is not None:
            recovered_by["run_log_writer"] = _recovered(self.writer_proc) - writer_recovered
        self.add({
            "id": row_id(setup.name, "sigkill"), "setup": setup.name, "scenario": "sigkill", "status": "ok",
            "label": f"SIGKILL of daphne under load ({clients} clients, killed after {after:g} s)",
            "clients": clients, "kill_after_s": after, "killed_at_s": _r(run.killed_at_s), "sent": run.sent,
            "answered_200": len(answered), "answered_after_kill": run.answered_after_kill,
            "cut_by_kill": run.cut_by_kill, "errors_before_kill": run.errors_before_kill,
            "other_statuses": run.other_statuses,
            "written_at_kill": len(answered & at_kill.keys()), "unwritten_at_kill": len(answered - at_kill.keys()),
            "journal_records_at_kill": journal_at_kill, "stream_entries_at_kill": stream_at_kill,
            "rows_found": len(found), "missing": len(answered - found), "exactly_once": exactly_once,
            "duplicates": duplicates, "rows_total": sum(per_id.values()),
            "rows_not_answered": len(per_id.keys() - answered),
            "recovered_s": recovered_s, "wait_limit_s": limit,
            # "recovered N log records" lines in the processes' logs (journal.recover).
            "journal_records_recovered_by": recovered_by,
            "logged": {"sent": len(answered), "rows": len(found), "duplicates": duplicates,
                       "all_logged": bool(answered) and exactly_once == len(answered)},
        })

    def run_writer(self, setup: Setup) -> None:
        n = self.cfg.writer_rows
        tenant = self.tenants["writer"]
        records = [load.synthetic_record(tenant["org_id"], tenant["key_id"], i) for i in range(n)]
        if setup.name == "scaled":
            import redis

            stream = f"hc:logs:bench-writer-{uuid.uuid4().hex[:6]}"
            client = redis.Redis.from_url(REDIS_BENCH_URL)
            self.log(f"scaled: XADD {n} records to {stream}, then time run_log_writer draining them")
            for start in range(0, n, 2000):
                pipe = client.pipeline(transaction=False)
                for record in records[start:start + 2000]:
                    pipe.xadd(stream, {"r": json.dumps(record, separators=(",", ":"))})
                pipe.execute()
            writer = setup.start_writer({"LOG_STREAM_KEY": stream}, name="run_log_writer-bench")
            t0 = time.perf_counter()
            deadline = t0 + max(120, n / 500)
            while True:
                rows = setup.log_counts(tenant["org_id"])["rows"]
                if rows >= n or time.perf_counter() > deadline:
                    break
                time.sleep(0.05)
            elapsed = time.perf_counter() - t0
            writer.stop()
            setup.procs.remove(writer)
            left = client.xlen(stream)
            client.delete(stream)
            method = "manage.py run_log_writer draining a Redis Stream into PostgreSQL (timed from its start line)"
            extra = {"stream_left": left}
        else:
            self.log(f"embedded: write_batch of {n} records into SQLite, batches of LOG_WRITER_BATCH_SIZE")
            data = self.workdir / "writer-records.json"
            data.write_text(json.dumps(records))
            code = (
                "import json, os, time\n"
                "from django.conf import settings\n"
                "from analytics.writer import write_batch\n"
                "records = json.load(open(os.environ['BENCH_RECORDS']))\n"
                "size = settings.LOG_WRITER_BATCH_SIZE\n"
                "t0 = time.perf_counter()\n"
                "for i in range(0, len(records), size):\n"
                "    write_batch(records[i:i + size])\n"
                "print('BENCHJSON ' + json.dumps({'elapsed': time.perf_counter() - t0}))\n"
            )
            out = setup.manage("shell", "-c", code, env=dict(setup.env, BENCH_RECORDS=str(data)), timeout=600)
            elapsed = json.loads(out.split("BENCHJSON ", 1)[1].splitlines()[0])["elapsed"]
            rows = setup.log_counts(tenant["org_id"])["rows"]
            method = ("analytics.writer.write_batch into SQLite, batches of LOG_WRITER_BATCH_SIZE (2,000 unless set: "
                      "what the in-process writer takes at once)")
            extra = {}
        self.add({"id": row_id(setup.name, "writer"), "setup": setup.name, "scenario": "writer",
                  "label": "log writer throughput", "status": "ok", "method": method, "records": n,
                  "rows": rows, "seconds": round(elapsed, 3), "rows_per_s": round(rows / elapsed, 1),
                  "logged": {"sent": n, "rows": rows, "all_logged": rows == n}, **extra})

    # -- everything ------------------------------------------------------------------------------
    def run(self) -> dict:
        self.workdir = Path(tempfile.mkdtemp(prefix="helicone-bench-"))
        self.pinning = Pinning(False)  # every scenario: all processes float on all cores
        self.pinned: Pinning | None = None  # the pinned second rows of the plain chat
        if self.cfg.pinned_rows:
            self.pinned = Pinning(True)
            if not self.pinned.enabled:
                self.notes.append("pinned rows skipped: they need two or more CPUs and taskset")
                self.pinned = None
        self.log(f"work dir {self.workdir}; {self.placement()}")
        self.load_before = other_load()
        stack.snapshot_source(self.workdir / "src")
        self.log(f"running the code from a snapshot of the working tree: {stack.SRC}")
        self.mock = MockProviderProcess(self.workdir, self.pinning)
        self.log(f"mock provider at {self.mock.url}")
        try:
            self.run_direct()
            for name in self.cfg.setups:
                self.run_setup(name)
        finally:
            self.mock.stop()
        result = {"meta": self.meta(), "rows": list(self.rows.values()), "targets": self.targets()}
        result["meta"]["disturbed_rows"] = [r["id"] for r in self.rows.values() if (r.get("other_cpu_pct") or 0) > 10]
        if os.environ.get("BENCH_KEEP_WORKDIR"):
            self.log(f"work dir kept: {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return result

    def meta(self) -> dict:
        from importlib.metadata import version

        def git(*args: str) -> str:
            r = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
            return r.stdout.strip()

        return {
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "git_commit": git("rev-parse", "HEAD"),
            # The run used the working tree as it was at the start (snapshot), committed or not.
            "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "git_uncommitted": git("status", "--porcelain").splitlines(),
            "cpu_count": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "django": version("django"),
            "daphne": version("daphne"),
            "twisted": version("twisted"),
            "aiohttp": version("aiohttp"),
            "wrk": load.wrk_version(),
            "smoke": self.cfg.smoke,
            "setups": self.cfg.setups,
            "pinning": self.placement(),
            "pinned_rows": self.pinned is not None,
            "notes": self.notes,
            "wrk_runs": f"1 thread, {self.cfg.warmup:g} s warm-up then {self.cfg.duration:g} s measured",
            "daphne_cmd": "python -m daphne -b 127.0.0.1 -p PORT heliconeproj.asgi:application "
                          "-v 0 as `make serve` runs it (DEBUG=0, no access log)",
            "scaled": f"DATABASE_URL=postgres://postgres@127.0.0.1:5432/{PG_BENCH_DB}, REDIS_URL={REDIS_BENCH_URL}, "
                      "LOG_WRITER_IN_PROCESS=0 + one manage.py run_log_writer",
            "embedded": "no DATABASE_URL/REDIS_URL: SQLite under a temporary VAR_DIR, in-process writer",
            "wall_s": round(time.monotonic() - self.started, 1),
            # The machine may be shared: what else was running, before and after.
            "load_before": self.load_before,
            "load_after": other_load(),
        }

    def placement(self) -> str:
        text = self.pinning.describe()
        if self.pinned is not None:
            text += f"; the '{PINNED.key}' rows: {self.pinned.describe()}"
        return text

    # -- targets ---------------------------------------------------------------------------------
    def targets(self) -> list[dict]:
        out = []

        def check(setup, name, measured, limit, ok, row):
            out.append({"setup": setup, "target": name, "measured": measured, "limit": limit,
                        "result": "n/a" if ok is None else ("PASS" if ok else "MISS"), "row": row})

        for setup in self.cfg.setups:
            r1 = self.rows.get(row_id(setup, "plain", 1), {})
            if r1.get("status") == "ok" and "overhead_p50_ms" in r1:
                check(setup, "overhead c=1 P50 <= 1 ms", f"{r1['overhead_p50_ms']:.3f} ms", "1 ms",
                      r1["overhead_p50_ms"] <= 1.0, r1["id"])
                check(setup, "overhead c=1 P95 <= 2 ms", f"{r1['overhead_p95_ms']:.3f} ms", "2 ms",
                      r1["overhead_p95_ms"] <= 2.0, r1["id"])
                check(setup, "overhead c=1 P99 <= 5 ms", f"{r1['overhead_p99_ms']:.3f} ms", "5 ms",
                      r1["overhead_p99_ms"] <= 5.0, r1["id"])
            else:
                check(setup, "overhead c=1", "no data", "", False, row_id(setup, "plain", 1))
            self.semantic_targets(setup, check)
            r32 = self.rows.get(row_id(setup, "plain", 32), {})
            if r32.get("status") == "ok":
                logged = r32["logged"]
                check(setup, ">= 1,000 req/s at c=32, every request logged",
                      f"{r32['rps']:.0f} req/s, {logged['rows']}/{logged['sent']} logged "
                      f"(CPU-bound estimate {r32.get('cpu_bound_rps_estimate') or 0:.0f} req/s)", "1000 req/s",
                      r32["rps"] >= 1000 and logged["all_logged"] and r32["errors"] == 0, r32["id"])
            else:
                check(setup, ">= 1,000 req/s at c=32", "no data", "", False, row_id(setup, "plain", 32))
            rt = self.rows.get(row_id(setup, "stream_ttft"), {})
            if rt.get("status") == "ok" and "overhead_ttft_p50_ms" in rt:
                check(setup, "TTFT overhead P50 <= 2 ms", f"{rt['overhead_ttft_p50_ms']:.3f} ms", "2 ms",
                      rt["overhead_ttft_p50_ms"] <= 2.0 and rt["logged"]["all_logged"], rt["id"])
            else:
                check(setup, "TTFT overhead P50 <= 2 ms", "no data", "", False, row_id(setup, "stream_ttft"))
            rm = self.rows.get(row_id(setup, "many_streams"), {})
            if rm.get("status") == "ok":
                check(setup, f"{self.cfg.many_streams} streams: all complete, all logged, RSS <= 300 MB",
                      f"{rm['completed']}/{rm['streams']} complete, {rm['logged']['rows']} logged, "
                      f"peak RSS {rm['rss_peak_mb']} MB", "300 MB",
                      rm["completed"] == rm["streams"] and rm["logged"]["all_logged"] and rm["rss_peak_mb"] <= 300,
                      rm["id"])
            else:
                check(setup, "many streams", "no data", "", False, row_id(setup, "many_streams"))
            rk = self.rows.get(row_id(setup, "sigkill"), {})
            if rk.get("status") == "ok":
                check(setup, "SIGKILL of daphne under load loses 0 logs",
                      f"{rk['exactly_once']}/{rk['answered_200']} answered 200s logged exactly once, "
                      f"{rk['missing']} missing, {rk['duplicates']} duplicates "
                      f"({rk['unwritten_at_kill']} not yet written at the kill)", "0 lost",
                      rk["logged"]["all_logged"] and rk["duplicates"] == 0, rk["id"])
            else:
                check(setup, "SIGKILL of daphne under load loses 0 logs", "no data", "", False,
                      row_id(setup, "sigkill"))
            rw = self.rows.get(row_id(setup, "writer"), {})
            if setup == "scaled":
                if rw.get("status") == "ok":
                    check(setup, "writer >= 5,000 rows/s into PostgreSQL", f"{rw['rows_per_s']:.0f} rows/s",
                          "5000 rows/s", rw["rows_per_s"] >= 5000 and rw["logged"]["all_logged"], rw["id"])
                else:
                    check(setup, "writer >= 5,000 rows/s into PostgreSQL", "no data", "", False,
                          row_id(setup, "writer"))
        return out


    def semantic_targets(self, setup: str, check) -> None:
        """The semantic cache's added P50 against the same request on the exact cache alone (c=1, same
        run), and the memory its embedder and scopes add to a gateway process."""
        rows = {key: self.rows.get(row_id(setup, key, self.cfg.concurrencies[0]), {})
                for key in ("cache_miss", "cache_hit", "semantic_miss", "semantic_hit")}
        for semantic, exact in (("semantic_miss", "cache_miss"), ("semantic_hit", "cache_hit")):
            name = f"{semantic.replace('_', ' ')} adds <= 0.3 ms P50 (vs {exact.replace('_', ' ')})"
            if rows[semantic].get("status") == "ok" and rows[exact].get("status") == "ok":
                added = rows[semantic]["p50_ms"] - rows[exact]["p50_ms"]
                check(setup, name, f"{added:+.3f} ms", "0.3 ms", added <= 0.3, rows[semantic]["id"])
            else:
                check(setup, name, "no data", "", False, row_id(setup, semantic, self.cfg.concurrencies[0]))
        if rows["semantic_hit"].get("status") == "ok" and rows["cache_miss"].get("status") == "ok":
            added = rows["semantic_hit"]["daphne_rss_mb"] - rows["cache_miss"]["daphne_rss_mb"]
            check(setup, "RSS the semantic cache adds to a gateway process (embedder, 2 scopes)",
                  f"{added:+.1f} MB", "", None, rows["semantic_hit"]["id"])


def _recovered(proc: Proc | None) -> int:
    """Journal records a process reports it recovered ("recovered N log records" in its log)."""
    if proc is None:
        return 0
    return sum(int(m) for m in re.findall(r"recovered (\d+) log records", proc.output()))


def _journal_records(root: Path) -> int:
    """Lines in the journal segments under `root` (records done or not: a segment goes once all are)."""
    count = 0
    for path in root.glob("*/*.jsonl"):
        try:
            count += path.read_bytes().count(b"\n")
        except OSError:  # removed meanwhile
            pass
    return count


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# --------------------------------------------------------------------------------------------
# The table


def _f(value, fmt="{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def render(result: dict) -> str:
    rows = result["rows"]
    meta = result["meta"]
    lines = [
        f"Benchmark {meta['timestamp']}  commit {meta['git_commit'][:10]}{' (dirty)' if meta['git_dirty'] else ''}"
        f"{'  SMOKE (figures not meaningful)' if meta['smoke'] else ''}",
        f"{meta['cpu_count']} CPU ({meta['cpu_model']}), Python {meta['python']}, Django {meta['django']}, "
        f"daphne {meta['daphne']}, Twisted {meta['twisted']}, aiohttp {meta['aiohttp']}, {meta['wrk']}",
        f"{meta['pinning']}; wrk {meta['wrk_runs']}",
        f"load average before {meta['load_before']['loadavg']}, after {meta['load_after']['loadavg']} "
        f"(the machine may be shared; busiest processes are in the JSON)",
        "",
        "Non-streamed chat completions (wrk; latency ms; overhead = gateway - direct, same run; x = gateway/direct;",
        " CPU ms/req = the server's CPU per request (daphne and the log writer it forks); other% = machine CPU used by processes this run did",
        " not start (other sessions, PostgreSQL, Redis): above ~10% the figures are disturbed)",
    ]
    head = (f"{'setup':9} {'scenario':46} {'c':>3} {'P50':>7} {'P95':>7} {'P99':>7} {'req/s':>8}  "
            f"{'overhead P50 / P95 / P99 ms':30} {'x direct P50/P95':17} {'CPU ms/req':>10} {'other%':>6}  logged")
    lines += [head, "-" * len(head)]
    for r in rows:
        if r["scenario"] not in {s.key for s in PLAIN_SCENARIOS} | {ACCESS_LOG_ON.key, PINNED.key, "bare_proxy"}:
            continue
        label = r.get("label", r["scenario"])
        if r["status"] != "ok":
            lines.append(f"{r['setup']:9} {label[:46]:46} {r['concurrency']:>3} {r['status']}")
            continue
        ov = (f"{r['overhead_p50_ms']:+.3f} / {r['overhead_p95_ms']:+.3f} / {r['overhead_p99_ms']:+.3f}"
              if "overhead_p50_ms" in r else "")
        ratio = f"{r['ratio_p50']:.2f}x / {r['ratio_p95']:.2f}x" if "ratio_p50" in r else ""
        lg = r.get("logged")
        logged = (f"{lg['rows']}/{lg['sent']} {'all' if lg['all_logged'] else 'MISSING'}"
                  f"{' (+%d cut at stop)' % lg['extra_rows'] if lg['extra_rows'] > 0 else ''}") if lg else "-"
        err = f" errors={r['errors']}" if r.get("errors") else ""
        cpu = _f(r.get("gateway_cpu_ms_per_request"))
        other = _f(r.get("other_cpu_pct"), "{:.0f}")
        lines.append(f"{r['setup']:9} {label[:46]:46} {r['concurrency']:>3} {r['p50_ms']:>7.3f} {r['p95_ms']:>7.3f} "
                     f"{r['p99_ms']:>7.3f} {r['rps']:>8.1f}  {ov:30} {ratio:17} {cpu:>10} {other:>6}  {logged}{err}")

    lines += ["", "Streamed (aiohttp client; ms): time to first byte and total, sequential"]
    head = (f"{'setup':9} {'n':>4} {'TTFT P50':>9} {'TTFT P95':>9} {'total P50':>10} {'total P95':>10}  "
            f"{'overhead TTFT P50/P95':22} {'overhead total P50/P95':23} logged")
    lines += [head, "-" * len(head)]
    for r in rows:
        if r["scenario"] != "stream_ttft":
            continue
        if r["status"] != "ok":
            lines.append(f"{r['setup']:9} {r['status']}")
            continue
        ov = (f"{r['overhead_ttft_p50_ms']:+.3f} / {r['overhead_ttft_p95_ms']:+.3f}"
              if "overhead_ttft_p50_ms" in r else "")
        ovt = (f"{r['overhead_total_p50_ms']:+.3f} / {r['overhead_total_p95_ms']:+.3f}"
               if "overhead_total_p50_ms" in r else "")
        lg = r.get("logged")
        logged = f"{lg['rows']}/{lg['sent']} {'all' if lg['all_logged'] else 'MISSING'}" if lg else "-"
        lines.append(f"{r['setup']:9} {r['streams']:>4} {_f(r['ttft_p50_ms']):>9} {_f(r['ttft_p95_ms']):>9} "
                     f"{_f(r['total_p50_ms']):>10} {_f(r['total_p95_ms']):>10}  {ov:22} {ovt:23} {logged}"
                     f"{' failed=%d' % r['failed'] if r['failed'] else ''}")

    lines += ["", "Concurrent slow streams (aiohttp client): completion, stream time, largest chunk gap, gateway RSS"]
    head = (f"{'setup':9} {'scenario':42} {'done':>11} {'wall s':>7} {'total P50/P95/max s':>21} "
            f"{'max gap P50/max ms':>19} {'RSS peak/HWM MB':>16}  logged")
    lines += [head, "-" * len(head)]
    for r in rows:
        if r["scenario"] != "many_streams":
            continue
        if r["status"] != "ok":
            lines.append(f"{r['setup']:9} {r['status']}")
            continue
        tot = "/".join(_f(r[k] / 1000 if r[k] is not None else None, "{:.2f}")
                       for k in ("total_p50_ms", "total_p95_ms", "total_max_ms"))
        gap = f"{_f(r['max_chunk_gap_p50_ms'], '{:.0f}')}/{_f(r['max_chunk_gap_max_ms'], '{:.0f}')}"
        rss = f"{r['rss_peak_mb']}/{r['vmhwm_mb']}" if "rss_peak_mb" in r else "-"
        lg = r.get("logged")
        logged = f"{lg['rows']}/{lg['sent']} {'all' if lg['all_logged'] else 'MISSING'}" if lg else "-"
        lines.append(f"{r['setup']:9} {r['label'][:42]:42} {r['completed']:>5}/{r['streams']:<5} {r['wall_s']:>7.2f} "
                     f"{tot:>21} {gap:>19} {rss:>16}  {logged}")

    lines += ["", "SIGKILL of daphne under load (aiohttp client; a fresh daphne, same journal, database and stream,",
              " is started after the kill and sent no request; every answered 200 must have exactly one row)"]
    lines += [" (answered: complete 200s; cut: requests in flight at the kill; unwritten: answered but not in the",
              "  database at the kill; journal: lines in the journals at the kill, written or not; in s: restart to",
              "  every answered request logged)"]
    head = (f"{'setup':9} {'clients':>7} {'kill s':>6} {'answered':>8} {'cut':>4} {'unwritten':>9} "
            f"{'journal':>7} {'logged':>11} {'dup':>4} {'in s':>6}  recovered by")
    lines += [head, "-" * len(head)]
    for r in rows:
        if r["scenario"] != "sigkill":
            continue
        if r["status"] != "ok":
            lines.append(f"{r['setup']:9} {r['status']}")
            continue
        by = ", ".join(f"{k} {v}" for k, v in r["journal_records_recovered_by"].items())
        errors = sum(r["errors_before_kill"].values()) + sum(r["other_statuses"].values())
        lines.append(f"{r['setup']:9} {r['clients']:>7} {_f(r['killed_at_s'], '{:.2f}'):>6} {r['answered_200']:>8} "
                     f"{r['cut_by_kill']:>4} {r['unwritten_at_kill']:>9} {r['journal_records_at_kill']:>7} "
                     f"{r['rows_found']:>5}/{r['answered_200']:<5} {r['duplicates']:>4} "
                     f"{_f(r['recovered_s'], '{:.1f}'):>6}  {by}{' errors before kill=%d' % errors if errors else ''}")

    lines += ["", "Log writer"]
    for r in rows:
        if r["scenario"] != "writer":
            continue
        if r["status"] != "ok":
            lines.append(f"{r['setup']:9} {r['status']}")
            continue
        lines.append(f"{r['setup']:9} {r['rows']}/{r['records']} rows in {r['seconds']:.2f} s = "
                     f"{r['rows_per_s']:.0f} rows/s  ({r['method']})")

    for note in meta.get("notes") or []:
        lines += ["", f"NOTE: {note}"]
    disturbed = meta.get("disturbed_rows") or []
    if disturbed:
        lines += ["", f"WARNING: {len(disturbed)} measured runs shared the machine with work this run did not start "
                      f"(other% > 10: {', '.join(disturbed)}); their figures are pessimistic."]
    lines += ["", "Targets"]
    for t in result["targets"]:
        lines.append(f"  {t['result']:5} {t['setup']:9} {t['target']:60} {t['measured']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cfg = Config.from_args(argv)
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    bench = Bench(cfg)
    result = bench.run()
    out = cfg.out
    if out is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        # Smoke figures mean nothing: they go under var/ (ignored by git), real runs to bench/results/.
        out = ROOT / "var" / "bench-smoke.json" if cfg.smoke else ROOT / "bench" / "results" / f"bench-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print()
    print(render(result))
    print(f"\nJSON: {out}")
    errors = [r["id"] for r in result["rows"] if r["status"] not in ("ok", NOT_BUILT)]
    if errors:
        print(f"scenarios that failed to run: {errors}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
