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

ROLLUPS = """
CREATE TABLE IF NOT EXISTS log_rollups (
    org_id UInt64,
    dim LowCardinality(String),
    value String,
    bucket DateTime('UTC'),
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
    last_at SimpleAggregateFunction(max, DateTime64(6, 'UTC')),
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
"""

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
    ]


def migrate() -> list[str]:
    """Create the database, tables and view when missing; returns what was run."""
    database = target().database
    client(database=False).command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    done = []
    for statement in statements():
        client().command(statement)
        done.append(statement.split("(")[0].split(" AS")[0].strip())
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
