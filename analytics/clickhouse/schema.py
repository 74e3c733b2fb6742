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

from ..sketch import LOG_GAMMA, MIN_VALUE
from . import client, target

DEDUP_WINDOW = 10_000  # recent insert blocks whose tokens the server remembers, per table
ZERO_BUCKET = -2147483648  # the sketch's bucket of values at or below MIN_VALUE

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
    requests SimpleAggregateFunction(sum, UInt64),
    errors SimpleAggregateFunction(sum, UInt64),
    cache_hits SimpleAggregateFunction(sum, UInt64),
    unpriced SimpleAggregateFunction(sum, UInt64),
    prompt_tokens SimpleAggregateFunction(sum, Int64),
    completion_tokens SimpleAggregateFunction(sum, Int64),
    cached_tokens SimpleAggregateFunction(sum, Int64),
    cost_usd SimpleAggregateFunction(sum, Decimal(38, 10)),
    saved_usd SimpleAggregateFunction(sum, Decimal(38, 10)),
    first_at SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
    last_at SimpleAggregateFunction(max, DateTime64(6, 'UTC')),
    latency SimpleAggregateFunction(sumMap, Map(Int32, UInt64)),
    latency_low SimpleAggregateFunction(min, Nullable(Float64)),
    latency_high SimpleAggregateFunction(max, Nullable(Float64)),
    ttft SimpleAggregateFunction(sumMap, Map(Int32, UInt64)),
    ttft_low SimpleAggregateFunction(min, Nullable(Float64)),
    ttft_high SimpleAggregateFunction(max, Nullable(Float64))
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (org_id, dim, bucket, value)
SETTINGS non_replicated_deduplication_window = {window}
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

MEASURES = """
    count() AS requests,
    countIf(status >= 400 OR status < 200) AS errors,
    countIf(cache_hit) AS cache_hits,
    countIf(cost_usd IS NULL AND (prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL)
            AND status >= 200 AND status < 400) AS unpriced,
    sum(ifNull(prompt_tokens, 0)) AS prompt_tokens,
    sum(ifNull(completion_tokens, 0)) AS completion_tokens,
    sum(ifNull(cached_tokens, 0)) AS cached_tokens,
    sum(toDecimal128(ifNull(cost_usd, 0), 10)) AS cost_usd,
    sumIf(toDecimal128(ifNull(cost_usd, 0), 10), cache_hit) AS saved_usd,
    min(created_at) AS first_at,
    max(created_at) AS last_at,
    {latency},
    {ttft}"""


def _sketch(column: str) -> str:
    """A DDSketch of the column (analytics.sketch: the same buckets, as a Map that sumMap merges),
    with its exact extremes."""
    value = f"assumeNotNull({column})"
    index = f"toInt32(if({value} <= {MIN_VALUE!r}, {ZERO_BUCKET}, ceil(log({value}) / {LOG_GAMMA!r})))"
    name = column.removesuffix("_ms")
    return (f"sumMapIf(map({index}, toUInt64(1)), {column} IS NOT NULL AND NOT isNaN({value})) AS {name}, "
            f"min({column}) AS {name}_low, max({column}) AS {name}_high")


MEASURES = MEASURES.replace("{latency}", _sketch("latency_ms")).replace("{ttft}", _sketch("ttft_ms"))

ROLLUPS_VIEW = """
CREATE MATERIALIZED VIEW IF NOT EXISTS log_rollups_mv TO log_rollups AS
SELECT org_id, pair.1 AS dim, pair.2 AS value, toStartOfHour(created_at) AS bucket,
{measures}
FROM request_logs
ARRAY JOIN {pairs} AS pair
GROUP BY org_id, dim, value, bucket
SETTINGS prefer_column_name_to_alias = 1
"""


def statements() -> list[str]:
    return [
        LOGS.replace("{window}", str(DEDUP_WINDOW)),
        ROLLUPS.replace("{window}", str(DEDUP_WINDOW)),
        ROLLUPS_VIEW.replace("{measures}", MEASURES).replace("{pairs}", _PAIRS),
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
