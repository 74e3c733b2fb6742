"""The ClickHouse tables: request logs, and their hourly rollups kept by a materialized view.

`request_logs` holds one row per log (id = the Helicone-Id):
- ReplacingMergeTree ordered by (org_id, created_at, id), partitioned by month: a page of an
  org's time range reads neighbouring granules, and a log written twice by a race collapses on
  merge. Bloom-filter skip indexes find a log by id, user or session without the time.
- LowCardinality for the few-valued columns (model, provider, ...), a Map for properties, bodies
  and headers in ZSTD.
- A batch is inserted with a deduplication token (the hash of its ids): a retried batch is
  dropped by the server (`non_replicated_deduplication_window`, on the view's table too, or the
  rollups would count it twice).
- Lightweight updates (feedback, scores and property edits) need the block number column.

`log_rollups` (AggregatingMergeTree) holds, per org, dimension, value and hour, the measures
the pages show: sums, first and last request, and latency and time to first token as quantile
states: the DDSketch of analytics.sketch (0.5 % relative accuracy), its buckets as a Map that
`sumMap` merges, and exact extremes. Read back into analytics.sketch.Sketch, percentiles are
interpolated between ranks as PostgreSQL's percentile_cont defines them, as the SQL rollups'
are; ClickHouse's own quantileDD picks a rank, which on a few hundred logs put a P50 25 % away.
The view `log_rollups_mv` fills it from every insert into request_logs, one row per dimension
a log counts under: all logs (""), model, provider, status, cache_hit, streamed, cache_match,
user, session, name, prompt, the shadow-mode similarity band, and each property ("p:<Name>"),
as the SQL rollups keep them (analytics.rollups).
"""

from __future__ import annotations

import time

from ..rollups import SCALARS
from ..sketch import LOG_GAMMA, MIN_VALUE
from . import client, target

DEDUP_WINDOW = 10_000  # recent insert blocks whose tokens the server remembers, per table
ZERO_BUCKET = -2147483648  # the sketch's bucket of values at or below MIN_VALUE
FAR_PAST, FAR_FUTURE = "1970-01-01 00:00:00", "2299-12-31 00:00:00"

LOGS = """
CREATE TABLE IF NOT EXISTS request_logs (
    id UUID,
    org_id UInt64,
    api_key_id Nullable(UInt64),
    created_at DateTime64(6, 'UTC'),
    provider LowCardinality(String),
    method LowCardinality(String),
    target_url String CODEC(ZSTD(3)),
    path String CODEC(ZSTD(3)),
    requested_model LowCardinality(String),
    model LowCardinality(String),
    status Int32,
    error String CODEC(ZSTD(3)),
    cancelled Bool,
    streamed Bool,
    request_headers String CODEC(ZSTD(3)),
    request_body String CODEC(ZSTD(3)),
    response_body String CODEC(ZSTD(3)),
    request_omitted Bool,
    response_omitted Bool,
    latency_ms Nullable(Float64),
    ttft_ms Nullable(Float64),
    prompt_tokens Nullable(Int64),
    completion_tokens Nullable(Int64),
    cached_tokens Nullable(Int64),
    cost_usd Nullable(Decimal(20, 10)),
    user_id String,
    session_id String,
    session_path String,
    session_name String,
    properties Map(String, String),
    properties_json String CODEC(ZSTD(3)),
    request_name String,
    cache_hit Bool,
    cache_match LowCardinality(String),
    similarity Nullable(Float64),
    source_request_id Nullable(UUID),
    retries Int32,
    fallback_index Nullable(Int32),
    prompt_id String,
    prompt_version Nullable(Int32),
    prompt_variables String CODEC(ZSTD(3)),
    source LowCardinality(String),
    INDEX id_bloom id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX user_bloom user_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX session_bloom session_id TYPE bloom_filter(0.01) GRANULARITY 4
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(created_at)
ORDER BY (org_id, created_at, id)
SETTINGS non_replicated_deduplication_window = {window},
         enable_block_number_column = 1, enable_block_offset_column = 1
"""

# The sums, first and last request a rollup row and a session's row keep (rollups.SCALARS' order).
MEASURE_COLUMNS = """\
    requests SimpleAggregateFunction(sum, Int64),
    errors SimpleAggregateFunction(sum, Int64),
    cache_hits SimpleAggregateFunction(sum, Int64),
    unpriced SimpleAggregateFunction(sum, Int64),
    prompt_tokens SimpleAggregateFunction(sum, Int64),
    completion_tokens SimpleAggregateFunction(sum, Int64),
    cached_tokens SimpleAggregateFunction(sum, Int64),
    cost_usd SimpleAggregateFunction(sum, Decimal(38, 10)),
    saved_usd SimpleAggregateFunction(sum, Decimal(38, 10)),
    first_at SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
    last_at SimpleAggregateFunction(max, DateTime64(6, 'UTC')),"""

ROLLUPS = """
CREATE TABLE IF NOT EXISTS log_rollups (
    org_id UInt64,
    dim LowCardinality(String),
    value String,
    bucket DateTime('UTC'),
{measures}
    latency SimpleAggregateFunction(sumMap, Map(Int32, Int64)),
    latency_low SimpleAggregateFunction(min, Nullable(Float64)),
    latency_high SimpleAggregateFunction(max, Nullable(Float64)),
    ttft SimpleAggregateFunction(sumMap, Map(Int32, Int64)),
    ttft_low SimpleAggregateFunction(min, Nullable(Float64)),
    ttft_high SimpleAggregateFunction(max, Nullable(Float64))
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (org_id, dim, bucket, value)
SETTINGS non_replicated_deduplication_window = {window},
         index_granularity = 256
""".replace("{measures}", MEASURE_COLUMNS)

# The (dimension, value) pairs a log counts under; shadow bands and properties only when present.
_PAIRS = """
arrayConcat(
    [('', ''), ('model', toString(model)), ('provider', toString(provider)), ('status', toString(status)),
     ('cache_hit', if(cache_hit, '1', '0')), ('streamed', if(streamed, '1', '0')),
     ('cache_match', toString(cache_match)), ('user', user_id), ('session', session_id),
     ('name', request_name), ('prompt', prompt_id)],
    if(cache_match = 'shadow' AND similarity IS NOT NULL,
       [('shadow', toString(toDecimal64(floor(round(assumeNotNull(similarity) * 100, 6)) / 100, 2)))], []),
    arrayMap((k, v) -> ('p:' || k, v), mapKeys(properties), mapValues(properties))
)"""

def measures(sign: int = 1) -> str:
    """The rollup columns of a group of logs; sign -1 gives what taking them out subtracts (the
    extremes are left alone: min and max cannot be taken back)."""
    n = "" if sign > 0 else "-"
    first, last = ("min(created_at)", "max(created_at)") if sign > 0 else (f"toDateTime64('{FAR_FUTURE}', 6, 'UTC')",
                                                                           f"toDateTime64('{FAR_PAST}', 6, 'UTC')")
    return f"""
    {n}toInt64(count()) AS requests,
    {n}toInt64(countIf(status >= 400 OR status < 200)) AS errors,
    {n}toInt64(countIf(cache_hit)) AS cache_hits,
    {n}toInt64(countIf(cost_usd IS NULL AND (prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL)
                       AND status >= 200 AND status < 400)) AS unpriced,
    {n}sum(ifNull(prompt_tokens, 0)) AS prompt_tokens,
    {n}sum(ifNull(completion_tokens, 0)) AS completion_tokens,
    {n}sum(ifNull(cached_tokens, 0)) AS cached_tokens,
    {n}sum(toDecimal128(ifNull(cost_usd, 0), 10)) AS cost_usd,
    {n}sumIf(toDecimal128(ifNull(cost_usd, 0), 10), cache_hit) AS saved_usd,
    {first} AS first_at,
    {last} AS last_at,
    {_sketch("latency_ms", sign)},
    {_sketch("ttft_ms", sign)}"""


def _sketch(column: str, sign: int) -> str:
    """A DDSketch of the column (analytics.sketch: the same buckets, as a Map that sumMap merges),
    with its exact extremes."""
    value = f"assumeNotNull({column})"
    index = f"toInt32(if({value} <= {MIN_VALUE!r}, {ZERO_BUCKET}, ceil(log({value}) / {LOG_GAMMA!r})))"
    name = column.removesuffix("_ms")
    extremes = (f"min({column}) AS {name}_low, max({column}) AS {name}_high" if sign > 0 else
                f"CAST(NULL, 'Nullable(Float64)') AS {name}_low, CAST(NULL, 'Nullable(Float64)') AS {name}_high")
    return (f"sumMapIf(map({index}, toInt64({sign})), {column} IS NOT NULL AND NOT isNaN({value})) AS {name}, "
            + extremes)


def rollup_select(where: str = "", sign: int = 1) -> str:
    """The rollup rows of the logs `where` selects (the view's query; sign -1 to take them out)."""
    return (f"SELECT org_id, pair.1 AS dim, pair.2 AS value, toStartOfHour(created_at) AS bucket, {measures(sign)}\n"
            f"FROM request_logs ARRAY JOIN {_PAIRS} AS pair {('WHERE ' + where) if where else ''}\n"
            "GROUP BY org_id, dim, value, bucket SETTINGS prefer_column_name_to_alias = 1")


ROLLUPS_VIEW = "CREATE MATERIALIZED VIEW IF NOT EXISTS log_rollups_mv TO log_rollups AS\n"


# Where a log is, by id: a request's page knows only the id, and the logs are ordered by org and
# time (a bloom filter over 100M ids read 120 ms of index; this is one primary-key lookup).
IDS = """
CREATE TABLE IF NOT EXISTS request_ids (
    id UUID,
    org_id UInt64,
    created_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY id
SETTINGS non_replicated_deduplication_window = {window}
"""
IDS_VIEW = """
CREATE MATERIALIZED VIEW IF NOT EXISTS request_ids_mv TO request_ids AS
SELECT id, org_id, created_at FROM request_logs
"""


# Granules of 256 rows: a question reads a few rows of one dimension, and a granule's latency maps
# are read whole (8,192 rows' maps were half of a query's time at 100M logs).
# The hourly rollups added up per day (UTC), by a view on log_rollups: a 30-day question reads 30
# rows per value instead of 720 (their latency maps merged was half of a 30-day summary at 100M
# logs). Whatever is inserted into log_rollups reaches it, the opposite-sign rows of a change too.
DAILY_VIEW = """
CREATE MATERIALIZED VIEW IF NOT EXISTS log_rollups_daily_mv TO log_rollups_daily AS
SELECT org_id, dim, value, toStartOfDay(bucket) AS bucket, {sums}, min(first_at) AS first_at, max(last_at) AS last_at,
    sumMap(latency) AS latency, min(latency_low) AS latency_low, max(latency_high) AS latency_high,
    sumMap(ttft) AS ttft, min(ttft_low) AS ttft_low, max(ttft_high) AS ttft_high
FROM log_rollups
GROUP BY org_id, dim, value, toStartOfDay(bucket)
SETTINGS prefer_column_name_to_alias = 1
"""


# --- Sessions, one row each for all time -------------------------------------------------------
#
# `session_totals` keeps per org and session the sums of the rollups, the first and last request,
# the name (the greatest the logs gave, as the SQL all-time rows' label) and the requests per user
# (a map whose counts a change takes back, so distinct users stay exact): the sessions list
# walks it largest first (analytics.clickhouse.sessions) instead of adding up every session of a
# range. An insert's logs with a session pass through `session_feed` (a Null table: it keeps
# nothing) to the view that adds them up; a change inserts its opposite-sign rows directly
# (changes._rollups). The feed is what lets migrate count the logs stored before (fill_sessions):
# every view of the feed sees the same inserts. Granules of 256 rows: a page's sessions are then
# read by id (a granule of 8,192 rows each was half of a page's time at 10M logs).
SESSIONS = """
CREATE TABLE IF NOT EXISTS session_totals (
    org_id UInt64,
    session_id String,
{measures}
    name SimpleAggregateFunction(max, String),
    users SimpleAggregateFunction(sumMap, Map(String, Int64))
) ENGINE = AggregatingMergeTree
ORDER BY (org_id, session_id)
SETTINGS non_replicated_deduplication_window = {window},
         index_granularity = 256
""".replace("{measures}", MEASURE_COLUMNS)
SESSION_FEED = """
CREATE TABLE IF NOT EXISTS session_feed (
    id UUID,
    org_id UInt64,
    created_at DateTime64(6, 'UTC'),
    status Int32,
    cache_hit Bool,
    latency_ms Nullable(Float64),
    ttft_ms Nullable(Float64),
    prompt_tokens Nullable(Int64),
    completion_tokens Nullable(Int64),
    cached_tokens Nullable(Int64),
    cost_usd Nullable(Decimal(20, 10)),
    user_id String,
    session_id String,
    session_name String
) ENGINE = Null
"""
SESSION_FEED_VIEW = """
CREATE MATERIALIZED VIEW IF NOT EXISTS session_feed_mv TO session_feed AS
SELECT id, org_id, created_at, status, cache_hit, latency_ms, ttft_ms, prompt_tokens, completion_tokens,
    cached_tokens, cost_usd, user_id, session_id, session_name
FROM request_logs WHERE session_id != ''
"""
SESSIONS_VIEW = "CREATE MATERIALIZED VIEW IF NOT EXISTS session_totals_mv TO session_totals AS\n"
# The ids the feed passed on while migrate fills session_totals (dropped once it is filled).
SEEN = "CREATE TABLE IF NOT EXISTS session_totals_seen (id UUID) ENGINE = MergeTree ORDER BY id"
SEEN_VIEW = "CREATE MATERIALIZED VIEW IF NOT EXISTS session_totals_seen_mv TO session_totals_seen AS " \
            "SELECT id FROM session_feed"


def session_select(source: str = "session_feed", where: str = "", sign: int = 1) -> str:
    """The session_totals rows of the logs with a session in `source` that `where` selects, in the
    table's column order (the view's query; sign -1 to take them out: a name is not taken back)."""
    name = "max(session_name)" if sign > 0 else "''"
    users = f"sumMapIf(map(user_id, toInt64({sign})), user_id != '')"
    return (f"SELECT org_id, session_id, {', '.join(SCALARS)}, first_at, last_at, name, users FROM (\n"
            f"SELECT org_id, session_id, {measures(sign)}, {name} AS name, {users} AS users\n"
            f"FROM {source} WHERE session_id != ''{(' AND ' + where) if where else ''} GROUP BY org_id, session_id)\n"
            "SETTINGS prefer_column_name_to_alias = 1")


# session_totals holds every log once this row is in it (never one a page reads: no org has id 0).
FILLED = "org_id = 0 AND session_id = ''"


def fill_sessions() -> bool:
    """Count the logs stored before session_totals existed into it, once; False when it was done.

    The writers keep inserting meanwhile. An insert that starts once `session_feed_mv` exists is
    counted by the views; the logs of those that started before are counted here: the logs up to
    the highest block number once those inserts have ended, less the ids the feed passed on (which
    `session_totals_seen`, a second view of the feed created before it, records meanwhile). The
    counts go to a table of their own first, with the FILLED row, and are attached to
    session_totals in one step: a crash before that leaves nothing counted and the next migrate
    counts again, after it the FILLED row says the table is whole (to migrate and to the reads)."""
    c = client()
    filled = c.query(f"SELECT count() FROM session_totals WHERE {FILLED}").result_rows[0][0]
    if not filled:
        c.command(SEEN)
        c.command(SEEN_VIEW)
        c.command(SESSION_FEED_VIEW)
        _inserts_ended()  # those that started before the feed: their logs are all stored now
        last = int(c.query("SELECT max(_block_number) FROM request_logs").result_rows[0][0])
        _inserts_ended()  # those that stored logs up to `last` through the feed: their ids are recorded
        c.command("DROP TABLE IF EXISTS session_totals_fill")
        c.command("CREATE TABLE session_totals_fill AS session_totals")
        where = f"_block_number <= {last} AND id NOT IN (SELECT id FROM session_totals_seen)"
        c.command(f"INSERT INTO session_totals_fill {session_select('request_logs', where)}",
                  settings={"insert_deduplicate": 0})
        c.command("INSERT INTO session_totals_fill (org_id, session_id, requests) VALUES (0, '', 1)")
        c.command("ALTER TABLE session_totals ATTACH PARTITION tuple() FROM session_totals_fill")
    for name in ("session_totals_seen_mv", "session_totals_seen", "session_totals_fill"):
        c.command(f"DROP TABLE IF EXISTS {name}")
    return not filled


def _inserts_ended() -> None:
    """Wait until the inserts running now have ended."""
    running = "SELECT query_id FROM system.processes WHERE query_kind = 'Insert'"
    waiting = {row[0] for row in client().query(running).result_rows}
    while waiting:
        time.sleep(0.1)
        waiting &= {row[0] for row in client().query(running).result_rows}


def statements() -> list[str]:
    daily_sums = ", ".join(f"sum({name}) AS {name}" for name in SCALARS)
    return [
        LOGS.replace("{window}", str(DEDUP_WINDOW)),
        IDS.replace("{window}", str(DEDUP_WINDOW)),
        IDS_VIEW,
        ROLLUPS.replace("{window}", str(DEDUP_WINDOW)),
        ROLLUPS_VIEW + rollup_select(),
        ROLLUPS.replace("{window}", str(DEDUP_WINDOW)).replace("log_rollups (", "log_rollups_daily (", 1),
        DAILY_VIEW.replace("{sums}", daily_sums),
        CHECKPOINTS,
        SESSIONS.replace("{window}", str(DEDUP_WINDOW)),
        SESSION_FEED,
        SESSIONS_VIEW + session_select(),
    ]


def migrate() -> list[str]:
    """Create the database, tables and view when missing; returns what was run."""
    database = target().database
    client(database=False).command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    done = []
    for statement in statements():
        client().command(statement)
        done.append(statement.split("(")[0].split(" AS")[0].strip())
    if fill_sessions():
        done.append("session_totals filled from request_logs")
    return done


# --- copy_logs_to_clickhouse's position, per org ------------------------------------------------

CHECKPOINTS = """
CREATE TABLE IF NOT EXISTS copy_checkpoints (
    org_id UInt64,
    created_at DateTime64(6, 'UTC'),
    id UUID,
    saved_at DateTime64(6, 'UTC') DEFAULT now64(6)
) ENGINE = ReplacingMergeTree(saved_at)
ORDER BY org_id
"""


def checkpoint(org_id: int):
    """(created_at, id) of the last log copied for the org, or None."""
    rows = client().query("SELECT created_at, id FROM copy_checkpoints FINAL WHERE org_id = {o:UInt64}",
                          parameters={"o": org_id}).result_rows
    return tuple(rows[0]) if rows else None


def save_checkpoint(org_id: int, created_at, log_id) -> None:
    client().insert("copy_checkpoints", [[org_id, created_at, log_id]], column_names=["org_id", "created_at", "id"],
                    settings={"insert_deduplicate": 0})
