"""`make bench-smoke` still works: every scenario runs briefly and every request is logged.

Runs `python -m bench.run --smoke` (embedded setup only: a SQLite file in a
temporary directory, so it never touches the test database; unpinned, without
the pinned second rows). Skipped when wrk is not installed (`apt-get install -y wrk`).
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import Config

ROOT = Path(__file__).resolve().parent.parent

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed: apt-get install -y wrk")

EXPECTED_ROWS = [
    "direct/plain/c1", "direct/plain/c32", "direct/stream_ttft", "direct/many_streams",
    "reference/bare_proxy/c1", "reference/bare_proxy/c32",
    "embedded/plain/c1", "embedded/plain/c32",
    "embedded/cache_hit/c1", "embedded/cache_hit/c32",
    "embedded/ratelimited/c1", "embedded/ratelimited/c32",
    "embedded/cache_miss/c1", "embedded/semantic_miss/c1", "embedded/semantic_hit/c1",  # c=1 only
    "embedded/plain_access_log/c1", "embedded/plain_access_log/c32",  # the last setup only
    "embedded/stream_ttft", "embedded/many_streams", "embedded/sigkill", "embedded/writer",
]
# Rows that may be placeholders until the gateway grows the feature.
MAY_BE_PLACEHOLDERS = {"cache_hit", "ratelimited"}


@pytest.mark.parametrize("argv, env, pinned_rows", [
    ([], {}, True),  # make bench: every scenario unpinned, plus the pinned rows of the plain chat
    (["--no-pinned-rows"], {}, False),
    (["--no-pin"], {}, False),
    ([], {"BENCH_PIN": "0"}, False),
    (["--smoke"], {}, False),  # the smoke run stays short
    (["--smoke", "--pinned-rows"], {}, True),
    (["--smoke"], {"BENCH_PIN": "1"}, True),
])
def test_pinned_rows_are_on_by_default_and_can_be_left_out(monkeypatch, argv, env, pinned_rows):
    for name in ("BENCH_PIN", "BENCH_SMOKE", "BENCH_SETUPS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Config.from_args(argv).pinned_rows is pinned_rows


@needs_wrk
def test_bench_smoke_runs_every_scenario_and_logs_every_request(tmp_path):
    out = tmp_path / "smoke.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-5000:] + "\n" + result.stderr[-5000:]
    data = json.loads(out.read_text())

    meta = data["meta"]
    for key in ("cpu_count", "python", "django", "daphne", "aiohttp", "git_commit", "timestamp"):
        assert meta.get(key), key
    assert meta["smoke"] is True

    rows = {row["id"]: row for row in data["rows"]}
    assert sorted(rows) == sorted(EXPECTED_ROWS)
    for rid, row in rows.items():
        if row["scenario"] in MAY_BE_PLACEHOLDERS and row["status"] == "n/a: not built yet":
            continue
        assert row["status"] == "ok", (rid, row["status"])
        if "logged" in row:
            assert row["logged"]["all_logged"], (rid, row["logged"])
    for rid in ("direct/plain/c1", "embedded/plain/c1", "embedded/plain/c32"):
        assert rows[rid]["requests"] > 0 and rows[rid]["errors"] == 0, rid
    assert rows["embedded/plain/c32"]["logged"]["sent"] > 0
    many = rows["embedded/many_streams"]
    assert many["completed"] == many["streams"] == 20
    assert many["rss_peak_mb"] > 0
    assert rows["embedded/writer"]["rows"] == rows["embedded/writer"]["records"]
    assert meta["pinned_rows"] is False and not any(rid.split("/")[1] == "plain_pinned" for rid in rows)
    # Daphne killed under load: every answered request has exactly one row once a fresh daphne ran.
    kill = rows["embedded/sigkill"]
    assert kill["answered_200"] > 0
    assert kill["exactly_once"] == kill["rows_found"] == kill["answered_200"]
    assert kill["missing"] == 0 and kill["duplicates"] == 0

    targets = {t["target"] for t in data["targets"]}
    assert any("overhead c=1 P50" in t for t in targets)
    assert any("overhead c=1 P99" in t for t in targets)
    assert any("SIGKILL" in t for t in targets)
    # The semantic cache's rows: an eligible miss searched a scope and missed, a paraphrase was served.
    assert rows["embedded/semantic_miss/c1"]["probe_headers"] and rows["embedded/semantic_hit/c1"]["requests"] > 0
    assert any("semantic hit adds" in t for t in targets) and any("semantic miss adds" in t for t in targets)
    assert all(t["result"] in ("PASS", "MISS", "n/a") for t in data["targets"])
    # The table printed at the end names every section.
    for heading in ("Non-streamed", "Streamed", "Concurrent slow streams", "SIGKILL of daphne", "Log writer",
                    "Targets"):
        assert heading in result.stdout


def test_the_clickhouse_benchmark_runs(tmp_path):
    """`make bench-clickhouse` end to end on a few logs: a real ClickHouse server, every aggregate
    page timed, disk per million logs, the writer's rate."""
    from tests.base import require_service

    require_service("PostgreSQL", "127.0.0.1", 5432)  # the benchmark keeps its accounts there
    out = tmp_path / "clickhouse.json"
    done = subprocess.run([sys.executable, "-m", "bench.analytics_clickhouse", "--logs", "20000", "--chunk", "10000",
                           "--runs", "2", "--writer-logs", "5000", "--database", "helicone_bench_clickhouse_smoke",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["size"]["request_logs"]["rows"] == 20000
    assert result["size"]["log_rollups"]["rows"] > 0
    assert len(result["pages"]) == 31 and all(page["p95_ms"] > 0 for page in result["pages"].values())
    assert {"request page", "explorer 7d, slowest first", "request panel", "user page 30d",
            "session page"} <= set(result["pages"])
    writer = result["writer"]  # run_log_writer from the stream, then the insert alone: half each
    assert (writer["rows"], writer["insert"]["rows"]) == (2500, 2500)
    assert writer["seconds"] > 0 and writer["cpu_seconds"] > 0 and writer["insert"]["seconds"] > 0


def test_the_analytics_benchmark_runs_and_measures_again_on_the_same_data(tmp_path):
    """`make bench-analytics` end to end on a few logs (PostgreSQL), then `--reuse`: the pages and
    the writer measured again on the database the first run left, whose logs the rolled-back purge
    leaves as they were."""
    import psycopg

    from tests.base import require_service

    require_service("PostgreSQL", "127.0.0.1", 5432)
    database = "helicone_bench_analytics_smoke"
    common = ["--runs", "2", "--writer-logs", "2000", "--database", database]

    def scale_logs() -> int:
        with psycopg.connect(f"postgres://postgres@127.0.0.1:5432/{database}") as conn:
            return conn.execute("SELECT count(*) FROM analytics_requestlog l JOIN orgs_organization o "
                                "ON o.id = l.org_id WHERE o.slug = 'scale'").fetchone()[0]

    first, again = tmp_path / "first.json", tmp_path / "again.json"
    for out, extra in ((first, ["--logs", "3000"]), (again, ["--reuse"])):
        done = subprocess.run([sys.executable, "-m", "bench.analytics", *extra, *common, "--out", str(out)],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        if out is first:
            kept = scale_logs()
    for path in (first, again):
        result = json.loads(path.read_text())
        assert len(result["pages"]) == 31 and all(page["p95_ms"] > 0 for page in result["pages"].values())
        assert result["writer"]["rows"] == 2000 and result["writer"]["batch"] == 2000
        assert result["purge"]["rows"] > 0
    assert json.loads(first.read_text())["rebuild_seconds"] > 0
    assert scale_logs() == kept < 3000  # the first run's purge stayed, the second was rolled back
