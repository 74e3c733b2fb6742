"""The ClickHouse analytics benchmark (issue #18): `make bench-clickhouse LOGS=100000000`, or
`python -m bench.analytics_clickhouse --logs 100000000`.

1. starts a real ClickHouse 26.9 server (chdb-core, bench/clickhouse_server.py) on a fresh data
   directory under var/, and a fresh PostgreSQL database (``--database``) for the
   accounts, with CLICKHOUSE_URL pointing at the server (migrate creates its tables);
2. generates ``--logs`` logs of one org over 30 days straight into ClickHouse (INSERT … SELECT
   from numbers(), the same distributions as `manage.py generate_logs`: models and prices,
   log-normal latencies, streamed calls with a time to first token, errors, cache hits, a long
   tail of users, sessions, properties, request bodies), which fills the rollups view;
3. reports the disk used per million logs (logs and rollups, from system.parts);
4. times every page and API `manage.py measure_analytics` times (P50 and P95): the aggregates,
   the explorer, `/api/v1/requests` and a request's page, all read from ClickHouse;
5. measures the log writer into ClickHouse, one process, with ``--writer-logs`` (400,000) logs:
   half of them through the insert alone (analytics.clickhouse.store's prepare_records and send:
   the columns made straight from the records, batch after batch), then the other half through
   run_log_writer's own loop (analytics.writer.StreamWriter) draining a Redis stream of its own
   (``--redis-url``), filled as gateways fill it, entries of 50 records: read, made into columns,
   inserted with the next batch made meanwhile, live events published, acknowledged. Batches of
   LOG_WRITER_BATCH_SIZE (``--writer-batch``). With ``--writer-only``, just this: no logs
   generated, no pages timed.

With ``--reuse`` it times the pages again on the data an earlier run left (its ClickHouse data
directory under var/ and its PostgreSQL database): no logs generated, no writer measured.

Prints a table and writes JSON to bench/results/clickhouse-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from bench.analytics import SETUP, measure_pages, postgres_url, print_pages, run, write_result
from bench.clickhouse_server import ClickHouseServer
from bench.stack import free_port

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
DATABASE = "helicone_bench"

# provider, model, weight (of 100), median latency ms, $ per input token, $ per output token
MODELS = [
    ("openai", "gpt-4o-mini", 40, 700, 0.15e-6, 0.6e-6),
    ("openai", "gpt-4o", 15, 1400, 2.5e-6, 10e-6),
    ("openai", "gpt-4.1-nano", 8, 450, 0.1e-6, 0.4e-6),
    ("anthropic", "claude-3-5-haiku-latest", 14, 900, 0.8e-6, 4e-6),
    ("anthropic", "claude-sonnet-4-20250514", 8, 2200, 3e-6, 15e-6),
    ("groq", "llama-3.1-8b-instant", 10, 250, 0.05e-6, 0.08e-6),
    ("mistral", "mistral-small-latest", 5, 800, 0.1e-6, 0.3e-6),
]

GENERATE = """
INSERT INTO request_logs (id, org_id, created_at, provider, method, path, requested_model, model, status, error,
    streamed, request_body, response_body, latency_ms, ttft_ms, prompt_tokens, completion_tokens, cached_tokens,
    cost_usd, user_id, session_id, session_path, session_name, properties, request_name, cache_hit, cache_match,
    retries, source)
SELECT
    generateUUIDv4(number) AS id, {org} AS org_id, created, m.1, 'POST',
    if(m.1 = 'anthropic', '/v1/messages', '/v1/chat/completions'), m.2, m.2, status,
    if(status = 200, '', concat('{"error": {"message": "upstream status ', toString(status), '"}}')),
    streamed,
    concat('{"model": "', m.2, '", "messages": [{"role": "user", "content": "',
           arrayElement(['Summarize this support ticket', 'Translate to French', 'Write a haiku about',
                         'Classify the intent of', 'Extract the invoice total from', 'Plan a weekend in'],
                        1 + r1 % 6), ' #', toString(r2 % 99999), '"}]}'),
    if(status = 200, concat('{"model": "', m.2, '", "choices": [{"message": {"role": "assistant", "content": "',
       arrayStringConcat(arrayMap(i -> arrayElement(
           ['sure', 'here', 'is', 'the', 'answer', 'with', 'details', 'and', 'notes'],
           1 + bitShiftRight(r3, i * 4) % 9), range(12)), ' '),
       '"}}]}'), ''),
    round(latency, 3), if(streamed, round(latency * (0.1 + 0.3 * ((r4 % 1000) / 1000)), 3), NULL),
    prompt_tokens, completion_tokens, if(r5 % 10 = 0, intDiv(prompt_tokens, 2), NULL),
    toDecimal64(prompt_tokens * m.5 + completion_tokens * m.6, 10),
    if(r6 % 100 < 85, concat('user-', leftPad(toString(toUInt32(pow(1 - (r7 % 1000000) / 1000000, -1 / 1.2))
                                               % 2000), 4, '0')), ''),
    if(in_session, concat(leftPad(toString(intDiv(age, 1800)), 5, '0'), '-',
                          leftPad(toString(r8 % {sessions}), 4, '0')), ''),
    if(in_session, arrayElement(['/', '/plan', '/plan/search', '/plan/search/rank', '/answer'], 1 + r9 % 5), ''),
    if(in_session, 'Agent run', ''),
    map('Feature', arrayElement(['chat', 'search', 'summarize', 'classify', 'extract'], 1 + r10 % 5),
        'Env', if(r10 % 100 < 90, 'prod', 'staging')),
    arrayElement(['answer', 'rewrite', 'route', 'title', 'embed-query', ''], 1 + r11 % 6),
    cache_hit, if(cache_hit, 'exact', ''), if(status = 429, 1, 0), 'proxy'
FROM (
    SELECT number, age, toDateTime64({end}, 6, 'UTC') - toIntervalMicrosecond(age_us) AS created, m, status,
           streamed, latency, prompt_tokens,
           if(status = 200, toInt64(exp(log(180) + 0.8 * randNormal(0, 1))) + 1, 0) AS completion_tokens,
           cache_hit, in_session, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11
    FROM (
        SELECT number, rand64(number) % ({days} * 86400000000) AS age_us, intDiv(age_us, 1000000) AS age,
               arrayElement({models}, arrayElement({weights}, 1 + rand(1) % 100)) AS m,
               arrayElement([{statuses}], 1 + rand(2) % 100) AS status,
               rand(3) % 100 < 35 AS streamed,
               least(m.4 * exp(0.55 * randNormal(0, 1)), 60000) AS latency,
               toInt64(exp(log(350) + 0.9 * randNormal(0, 1))) + 5 AS prompt_tokens,
               status = 200 AND rand(4) % 100 < 8 AS cache_hit,
               rand(5) % 100 < 30 AS in_session,
               rand(6) AS r1, rand(7) AS r2, rand64(8) AS r3, rand(9) AS r4, rand(10) AS r5, rand(11) AS r6,
               rand(12) AS r7, rand(13) AS r8, rand(14) AS r9, rand(15) AS r10, rand(16) AS r11
        FROM numbers({start}, {count})
    )
)
"""

WRITER = """
import os, random, time, json, threading
from datetime import datetime, timezone
import orjson, redis
from django.conf import settings
from analytics.clickhouse import client, store
from analytics.management.commands.generate_logs import Command
from analytics.management.commands.run_log_writer import tune_collector
from analytics.writer import StreamWriter
from orgs.models import Organization
org = Organization.objects.get(slug="writer")
rng = random.Random(7)
prices = Command._prices()
end = datetime.now(timezone.utc)
n, per_entry, batch = {writer_logs}, 50, settings.LOG_WRITER_BATCH_SIZE
records = []
for age in sorted((rng.uniform(0, 86_400) for _ in range(n)), reverse=True):
    row = Command._row(org.id, rng, prices, end, age, 2000, 40)
    # As gateway.proxy._record makes them: every field it sends, and no cost (the writer prices the call).
    del row["cost_usd"]
    row.update(id=str(row["id"]), created_at=row["created_at"].timestamp(), cache_write_tokens=None,
               api_key_id=None, prompt_version=None, prompt_variables=None, similarity=None,
               source_request_id=None, fallback_index=None)
    records.append(row)
def server_cpu():  # the ClickHouse server's CPU seconds so far (its process: user and system time)
    fields = open(f"/proc/{os.environ['BENCH_SERVER_PID']}/stat").read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
stored = lambda: client().query("SELECT count() FROM request_logs WHERE org_id = {o:UInt64}",
                                parameters={"o": org.id}).result_rows[0][0]
before = stored()
half = n // 2
# The gateways' stream, as they fill it: entries of 50 records.
r = redis.Redis.from_url(settings.REDIS_URL)
r.delete(settings.LOG_STREAM_KEY)
pipe = r.pipeline(transaction=False)
for start in range(half, n, per_entry):
    pipe.xadd(settings.LOG_STREAM_KEY, {"b": orjson.dumps(records[start:start + per_entry])})
pipe.execute()
# As run_log_writer sets the collector up (the records made here, no writer's, are set aside with
# Django's objects).
tune_collector()
# 1. The insert alone: store.prepare_records and store.send, batch after batch, nothing overlapped
# (the first batch also loads what the insert imports).
started, server = time.perf_counter(), server_cpu()
for start in range(0, half, batch):
    store.send(store.prepare_records(records[start:start + batch]))
insert_seconds, insert_server = time.perf_counter() - started, server_cpu() - server
# 2. run_log_writer's loop (StreamWriter) draining the stream: read, made into columns, inserted (the
# next batch read and made while one is inserted), live events published, acknowledged.
writer = StreamWriter(consumer="bench")
writer.ensure_group()
thread = threading.Thread(target=writer.run)
started, cpu, server = time.perf_counter(), time.process_time(), server_cpu()
thread.start()
while writer.written < n - half:
    time.sleep(0.005)
stream_seconds, stream_cpu = time.perf_counter() - started, time.process_time() - cpu
stream_server = server_cpu() - server
writer.stopping.set()
thread.join()
r.delete(settings.LOG_STREAM_KEY)
assert stored() - before == n, (stored() - before, n)
print(json.dumps({"rows": n - half, "seconds": stream_seconds, "cpu_seconds": stream_cpu,
                  "server_cpu_seconds": stream_server, "batch": batch, "per_entry": per_entry,
                  "insert": {"rows": half, "seconds": insert_seconds, "server_cpu_seconds": insert_server}}))
"""


def generate_sql(org_id: int, start: int, count: int, end: float, sessions: int) -> str:
    models = "[" + ", ".join(f"('{p}', '{m}', {w}, {median}, {i!r}, {o!r})"
                             for p, m, w, median, i, o in MODELS) + "]"
    weights = [index + 1 for index, model in enumerate(MODELS) for _ in range(model[2])]
    statuses = ", ".join(["200"] * 95 + ["429", "429", "500", "400", "503"])
    return (GENERATE.replace("{models}", models).replace("{weights}", str(weights))
            .replace("{statuses}", statuses).replace("{org}", str(org_id)).replace("{start}", str(start))
            .replace("{count}", str(count)).replace("{end}", repr(end)).replace("{days}", "30")
            .replace("{sessions}", str(sessions)))


def connect_to(server: ClickHouseServer):
    import clickhouse_connect

    return clickhouse_connect.get_client(host="127.0.0.1", port=server.http_port, database=DATABASE,
                                         send_receive_timeout=3600)


def fresh_postgres(name: str) -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.analytics_clickhouse", description=__doc__.split("\n\n")[0])
    p.add_argument("--logs", type=int, default=10_000_000)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--chunk", type=int, default=5_000_000, help="logs per INSERT … SELECT while generating")
    p.add_argument("--writer-logs", type=int, default=400_000,
                   help="logs the writer measurement inserts (half from the stream, half by the insert alone)")
    p.add_argument("--writer-batch", type=int, default=0,
                   help="LOG_WRITER_BATCH_SIZE for the writer measurement (default: the setting's default)")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/15",
                   help="the Redis the writer measurement's stream lives in (a key of its own)")
    p.add_argument("--database", default="helicone_bench_clickhouse", help="the PostgreSQL database (recreated)")
    p.add_argument("--writer-only", action="store_true",
                   help="measure the writer alone (no logs generated, no pages timed)")
    p.add_argument("--reuse", action="store_true",
                   help="time the pages again on the data an earlier run left (no generation, no writer)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    directory = ROOT / "var" / args.database
    if args.reuse and not (directory / "data").is_dir():
        p.error(f"--reuse: no data left at {directory}")
    if not args.reuse:
        shutil.rmtree(directory, ignore_errors=True)
    server = ClickHouseServer(directory, free_port(), free_port()).start()
    try:
        return _run(args, server)
    finally:
        server.stop()


def _run(args, server: ClickHouseServer) -> int:
    url = server.url(DATABASE)
    database = postgres_url(args.database) if args.reuse else fresh_postgres(args.database)
    env = {**os.environ, "DATABASE_URL": database, "CLICKHOUSE_URL": url, "DEBUG": "0",
           "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-analytics-secret-key-0123456789-abcdefghijkl")}
    env.pop("REDIS_URL", None)
    result: dict = {"logs": args.logs, "store": "clickhouse", "started": datetime.now(timezone.utc).isoformat()}
    if args.reuse:
        logs = connect_to(server).query("SELECT count() FROM request_logs").result_rows[0][0]
        result.update(logs=int(logs), reused=True, pages=measure_pages(env, args.runs))
        print(f"\nClickHouse analytics benchmark, pages again on {logs:,} logs left by an earlier run")
        print_pages(result["pages"])
        write_result(result, args.out, "clickhouse")
        return 0
    run(["migrate", "--noinput", "-v", "0"], env)
    run(["shell", "-c", SETUP], env)
    org_id = int(run(["shell", "-c", "from orgs.models import Organization; "
                                     "print(Organization.objects.get(slug='scale').id)"], env).strip().splitlines()[-1])
    if args.writer_only:
        result["logs"] = 0  # none generated
        result["writer"] = measure_writer(args, env, server)
        print_writer(result["writer"])
        write_result(result, args.out, "clickhouse-writer")
        return 0
    client = connect_to(server)
    end = time.time()
    sessions = max(1, round(args.logs / 40 / (30 * 86400 / 1800)))
    started = time.monotonic()
    chunks = [(start, min(args.chunk, args.logs - start)) for start in range(0, args.logs, args.chunk)]
    done = 0
    lock = threading.Lock()

    def insert(chunk) -> None:  # one INSERT … SELECT fills one core (its view runs block by block)
        nonlocal done
        connect_to(server).command(generate_sql(org_id, chunk[0], chunk[1], end, sessions))
        with lock:
            done += chunk[1]
            sys.stderr.write(f"\rgenerated {done:,}/{args.logs:,} logs, {done / (time.monotonic() - started):,.0f}/s ")
            sys.stderr.flush()

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(insert, chunks))
    sys.stderr.write("\n")
    result["insert_seconds"] = time.monotonic() - started
    sizes = {table: (rows, disk) for table, rows, disk in client.query(
        "SELECT table, sum(rows), sum(bytes_on_disk) FROM system.parts WHERE active AND database = {d:String} "
        "GROUP BY table", parameters={"d": DATABASE}).result_rows}
    result["size"] = {table: {"rows": int(rows), "bytes": int(disk)} for table, (rows, disk) in sizes.items()}
    result["pages"] = measure_pages(env, args.runs)
    result["writer"] = measure_writer(args, env, server)

    print(f"\nClickHouse analytics benchmark: {args.logs:,} logs of one org over 30 days")
    print(f"  generated straight into ClickHouse (rollups view included) in {result['insert_seconds']:.0f} s")
    for table, size in sorted(result["size"].items()):
        print(f"  {table}: {size['rows']:,} rows, {size['bytes'] / args.logs * 1e6 / 2**20:,.1f} MiB per million logs")
    print_pages(result["pages"])
    print_writer(result["writer"])
    write_result(result, args.out, "clickhouse")
    return 0


def measure_writer(args, env: dict[str, str], server: ClickHouseServer) -> dict:
    """run_log_writer's loop on a Redis stream of its own (``--redis-url``), then the insert alone;
    the CPU time of the writer and of the server in each."""
    env = {**env, "REDIS_URL": args.redis_url, "LOG_STREAM_KEY": f"bench:logs:{os.getpid()}",
           "BENCH_SERVER_PID": str(server.proc.pid)}
    if args.writer_batch:
        env["LOG_WRITER_BATCH_SIZE"] = str(args.writer_batch)
    script = WRITER.replace("{writer_logs}", str(args.writer_logs))
    return json.loads(run(["shell", "-c", script], env).strip().splitlines()[-1])


def print_writer(writer: dict) -> None:
    insert = writer["insert"]
    print(f"  log writer into ClickHouse (one process, batches of {writer['batch']:,}):\n"
          f"    run_log_writer from the Redis stream: {writer['rows'] / writer['seconds']:,.0f} logs/s "
          f"({writer['rows']:,} logs; CPU a log: the writer's {writer['cpu_seconds'] / writer['rows'] * 1e6:.1f} us, "
          f"the server's {writer['server_cpu_seconds'] / writer['rows'] * 1e6:.1f} us)\n"
          f"    the insert alone, batch after batch: {insert['rows'] / insert['seconds']:,.0f} logs/s "
          f"(the server's CPU a log: {insert['server_cpu_seconds'] / insert['rows'] * 1e6:.1f} us)")


if __name__ == "__main__":
    raise SystemExit(main())
