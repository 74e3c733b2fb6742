"""The analytics benchmark (issue #17): `make bench-analytics`, or
`python -m bench.analytics --logs 1000000`.

On a fresh database (PostgreSQL ``--database``, by default ``helicone_bench_analytics``, dropped
and recreated; with ``--sqlite`` a SQLite file under var/), it:

1. generates ``--logs`` realistic logs of one org over 30 days (`manage.py generate_logs`, which
   then builds the org's rollups) and reports both times;
2. reports the rollups' size: rows and bytes per million logs (PostgreSQL);
3. times every aggregate page and API (`manage.py measure_analytics`: P50 and P95 of ``--runs``);
4. measures the log writer maintaining rollups: 20,000 (``--writer-logs``) more logs of the last 24 hours through
   `write_batch` in batches of LOG_WRITER_BATCH_SIZE (what `run_log_writer` takes at once under load);
5. purges the oldest day of logs (retention), and reports logs deleted per second.

With ``--reuse`` it keeps the database an earlier run left (PostgreSQL) and skips steps 1 and 2,
to measure again after a change without generating millions of logs anew; the purge then
deletes the next day (retention 28 days) and is rolled back, so the data stay as they were.

Prints a table and writes JSON to bench/results/analytics-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"


def run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"manage.py {' '.join(args)} failed")
    return done.stdout


def postgres_url(name: str) -> str:
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def fresh_database(sqlite: bool, name: str) -> str:
    if sqlite:
        path = ROOT / "var" / "bench-analytics" / "helicone.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres_url(name)


SETUP = """
from orgs.models import Membership, Organization, Role, User
user = User.objects.create_user("bench@example.org", "bench-password-0123456789")
for slug in ("scale", "writer"):
    org = Organization.objects.create(name=slug.title(), slug=slug)
    Membership.objects.create(org=org, user=user, role=Role.OWNER)
"""

WRITER = """
import random, time, json
from datetime import datetime, timezone
from django.conf import settings
from analytics.management.commands.generate_logs import Command
from analytics.writer import write_batch
from orgs.models import Organization
from analytics.models import RequestLog, Rollup
org = Organization.objects.get(slug="writer")
# An earlier measurement's logs (--reuse) would make this one write into fuller rows: start empty.
Rollup.objects.filter(org=org).delete()
RequestLog.objects.filter(org=org).delete()
rng = random.Random(7)
prices = Command._prices()
end = datetime.now(timezone.utc)
n = 20_000
ages = sorted((rng.uniform(0, 86_400) for _ in range(n)), reverse=True)
records = []
for age in ages:
    row = Command._row(org.id, rng, prices, end, age, 2000, 40)
    row.update(id=str(row["id"]), created_at=row["created_at"].timestamp())
    records.append(row)
started = time.perf_counter()
size = settings.LOG_WRITER_BATCH_SIZE
for start in range(0, n, size):
    write_batch(records[start:start + size])
print(json.dumps({"rows": n, "seconds": time.perf_counter() - started, "batch": size}))
"""

PURGE = """
import contextlib, json, time
from datetime import timedelta
from django.db import transaction
from django.utils import timezone
from analytics import lifecycle
from orgs.models import Organization
org = Organization.objects.get(slug="scale")
org.retention_days = RETENTION
org.save()
plan = lifecycle.purge_plan(org)
started = time.perf_counter()
with transaction.atomic() if ROLLBACK else contextlib.nullcontext():
    deleted = lifecycle.purge(plan)
    seconds = time.perf_counter() - started
    if ROLLBACK:
        transaction.set_rollback(True)
print(json.dumps({"rows": deleted, "seconds": seconds}))
"""

SIZE = """
import json
from django.db import connection
from analytics.models import Rollup, RequestLog
out = {"rollup_rows": Rollup.objects.count(), "logs": RequestLog.objects.count(),
       "scale_logs": RequestLog.objects.filter(org__slug="scale").count()}
if connection.vendor == "postgresql":
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size('analytics_rollup'), pg_total_relation_size('analytics_requestlog')")
        out["rollup_bytes"], out["log_bytes"] = cursor.fetchone()
print(json.dumps(out))
"""


def measure_pages(env: dict[str, str], runs: int) -> dict[str, dict[str, float]]:
    """`manage.py measure_analytics` on the org "scale": {page: {"p50_ms", "p95_ms"}}."""
    pages = {}
    for line in run(["measure_analytics", "--org", "scale", "--runs", str(runs)], env).splitlines():
        match = re.match(r"(.+?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", line)
        if match:
            pages[match.group(1).strip()] = {"p50_ms": float(match.group(2)), "p95_ms": float(match.group(3))}
    return pages


def print_pages(pages: dict[str, dict[str, float]]) -> None:
    print(f"  {'page or API':<36} {'P50 ms':>8} {'P95 ms':>8}")
    for name, figures in pages.items():
        print(f"  {name:<36} {figures['p50_ms']:>8.1f} {figures['p95_ms']:>8.1f}")


def write_result(result: dict, out: Path | None, prefix: str) -> None:
    """The run's JSON, to `out` or bench/results/<prefix>-<time>.json."""
    path = out or ROOT / "bench" / "results" / f"{prefix}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"  written to {path}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.analytics", description=__doc__.split("\n\n")[0])
    p.add_argument("--logs", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--database", default="helicone_bench_analytics",
                   help="the PostgreSQL database (recreated, unless --reuse)")
    p.add_argument("--writer-logs", type=int, default=20_000, help="logs the writer measurement writes")
    p.add_argument("--reuse", action="store_true",
                   help="measure again on the PostgreSQL database an earlier run left "
                        "(no generation; purge rolled back)")
    args = p.parse_args(argv)
    if args.reuse and args.sqlite:
        p.error("--reuse is for the PostgreSQL database")
    database = postgres_url(args.database) if args.reuse else fresh_database(args.sqlite, args.database)
    env = {**os.environ, "DATABASE_URL": database, "DEBUG": "0",
           "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-analytics-secret-key-0123456789-abcdefghijkl")}
    env.pop("REDIS_URL", None)
    result: dict = {"logs": args.logs, "store": "sqlite" if args.sqlite else "postgresql",
                    "started": datetime.now(timezone.utc).isoformat()}
    run(["migrate", "--noinput", "-v", "0"], env)
    if not args.reuse:
        run(["shell", "-c", SETUP], env)
        out = run(["generate_logs", "--org", "scale", "--count", str(args.logs), "--days", "30", "--seed", "1"], env)
        result["insert_seconds"] = float(re.search(r"logs into scale in ([\d.]+)s", out).group(1))
        result["rebuild_seconds"] = float(re.search(r"Rollups rebuilt in ([\d.]+)s", out).group(1))
    result["size"] = json.loads(run(["shell", "-c", SIZE], env).strip().splitlines()[-1])
    if args.reuse:
        result["logs"] = result["size"]["scale_logs"]
    result["pages"] = measure_pages(env, args.runs)
    writer = WRITER.replace("n = 20_000", f"n = {args.writer_logs}")
    result["writer"] = json.loads(run(["shell", "-c", writer], env).strip().splitlines()[-1])
    # A reused database had its oldest day purged by the run that made it: purge the next one.
    purge = PURGE.replace("ROLLBACK", str(args.reuse)).replace("RETENTION", "28" if args.reuse else "29")
    result["purge"] = json.loads(run(["shell", "-c", purge], env).strip().splitlines()[-1])

    size = result["size"]
    print(f"\nAnalytics benchmark: {result['logs']:,} logs of one org over 30 days, {result['store']}")
    if "insert_seconds" in result:
        print(f"  generate: {result['insert_seconds']:.0f} s; "
              f"rollups built from them: {result['rebuild_seconds']:.0f} s")
    line = f"  rollups: {size['rollup_rows']:,} rows"
    if "rollup_bytes" in size:
        line += (f", {size['rollup_bytes'] / size['logs'] * 1e6 / 2**20:,.0f} MiB per million logs "
                 f"(the logs: {size['log_bytes'] / size['logs'] * 1e6 / 2**20:,.0f} MiB)")
    print(line)
    print_pages(result["pages"])
    writer = result["writer"]
    print(f"  log writer with rollups: {writer['rows'] / writer['seconds']:,.0f} rows/s "
          f"(batches of {writer.get('batch', 500):,})")
    purge = result["purge"]
    print(f"  purge of the oldest day: {purge['rows']:,} logs in {purge['seconds']:.1f} s "
          f"({purge['rows'] / max(purge['seconds'], 1e-9):,.0f} logs/s)")
    write_result(result, args.out, "analytics")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
