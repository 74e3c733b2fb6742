"""The sessions list from ClickHouse, largest or newest first, walked over the sessions' all-time
rows (`session_totals`, analytics.clickhouse.schema) as analytics.rollup_reads walks the SQL ones
(_alltime_page), instead of adding up every session of the range from the rollups.

A session's all-time measure bounds its measure in any range from above (sums only grow, a last
request in the range is no later than its last ever), so the rows are read largest first (ties by
id) and the walk stops once the page's last session sorts ahead of the last row read: no session
not yet read can enter the page. A session whose first and last requests both lie in the range
counts its all-time row as it is; one reaching past either end has its measure in the range added
up from the rollups and the raw rows at the ends (reads._parts, as grouped adds them). A change
cannot take a session's first or last request back (changes.py): its span there may be wider
than its logs', never narrower, so a session taken as wholly in the range is.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from .. import rollups
from ..queries import Selection
from ..rollups import SCALARS
from .reads import _DT64, _bounds, _finish, _outer, _parts, _Query, _run
from .schema import FILLED

# The orders the walk answers (largest or newest first) -> the column it sorts by.
ORDERS = {"count": "requests", "cost_usd": "cost_usd", "errors": "errors", "last": "last_at"}
CHUNK = 500
# Rows walked in order before the walk reads every remaining candidate at once (a search matching
# few sessions of many, a deep page, ties).
WALK_LIMIT = 20_000
# Sessions whose range totals one query adds up (their ids go as one parameter, a form field).
_PER_QUERY = 2_000
_COLUMNS = (*SCALARS, "first_at", "last_at")


def page(selection: Selection, *, order_by: str, offset: int, limit: int, contains: str = "",
         names: bool = False) -> tuple[list[dict[str, Any]], bool] | None:
    """One page of the sessions list as rollup_reads.people_page returns it: `limit` sessions
    from `offset` and whether more follow; `contains` matches the id (and the name, with `names`),
    ignoring case. None when the walk cannot answer: an ascending order, a selection with a filter
    (no all-time row keeps two dimensions), or a table migrate has not filled yet."""
    field = order_by.lstrip("-")
    if not order_by.startswith("-") or field not in ORDERS or rollups.condition(selection) != ("", ""):
        return None
    column = "t_" + ORDERS[field]
    start, end = _bounds(selection)
    want = offset + limit + 1
    in_range: dict[str, dict[str, Any] | None] = {}  # the sessions reaching past the range: their totals in it
    size = CHUNK
    while True:
        # Each read from the top, in one statement: rows the writer moves meanwhile are not skipped
        # between two reads. Four times more each time.
        walked = _walk(selection.org.pk, start, end, ORDERS[field], contains, names, size)
        if walked is None:
            return None
        exact: dict[str, dict[str, Any]] = {}
        reaching = []
        for row in walked:
            if row["t_first_at"] >= start and row["t_last_at"] < end:
                exact[row["k"]] = row
            elif row["k"] not in in_range:
                reaching.append(row)
        if reaching:
            found = _in_range(selection, reaching)
            in_range.update({row["k"]: found.get(row["k"]) for row in reaching})
        exact.update({key: row for key, row in in_range.items() if row is not None})
        ordered = sorted(exact, key=lambda key: _place(exact[key], column))
        if not size or len(walked) < size:
            break  # every row walked
        if len(ordered) >= want and _place(exact[ordered[want - 1]], column) < _place(walked[-1], column):
            break  # no session not walked can sort ahead of the page's last
        size = None if size >= WALK_LIMIT else min(size * 4, WALK_LIMIT)
    keys = ordered[offset:offset + limit]
    whole = _rows(selection.org.pk, [key for key in keys if key not in in_range])
    rows = [row for row in (in_range.get(key) or whole.get(key) for key in keys) if row is not None]
    return ([{"key": row["k"], **_finish(row, ()), "first": row["t_first_at"], "last": row["t_last_at"],
              "cost": Decimal(row["t_cost_usd"] or 0)} for row in rows], len(ordered) > offset + limit)


def _walk(org_id: int, start: datetime, end: datetime, column: str, contains: str, names: bool,
          size: int | None) -> list[dict[str, Any]] | None:
    """The org's sessions with requests whose span meets [start, end), the first `size` (all with
    None) by their all-time `column`, largest first, ties by id, with that column and their span;
    None while session_totals is not filled (its FILLED row, read by the same query). FINAL: the
    rows of a session are added up before the conditions (a sorted merge of the parts, cheaper than
    grouping every session)."""
    q = _Query(org_id)
    keep = ["requests > 0", f"last_at >= {q.bind(start, _DT64)}", f"first_at < {q.bind(end, _DT64)}"]
    if contains:
        text = q.bind(contains, "String")
        match = f"positionCaseInsensitiveUTF8(session_id, {text}) > 0"
        if names:
            match += f" OR positionCaseInsensitiveUTF8(name, {text}) > 0"
        keep.append(f"({match})")
    columns = ", ".join(f"{name} AS t_{name}" for name in dict.fromkeys(("first_at", "last_at", column)))
    sql = (f"SELECT {FILLED} AS filled, session_id AS k, {columns} FROM session_totals FINAL "
           f"WHERE org_id IN ({{org:UInt64}}, 0) AND ({FILLED} OR {' AND '.join(keep)}) "
           f"ORDER BY filled DESC, {column} DESC, session_id" + (f" LIMIT {size + 1}" if size else ""))
    rows = _run(sql, q, False)
    if not rows or not rows[0]["filled"]:
        return None
    return rows[1:]


def _rows(org_id: int, keys: list[str]) -> dict[str, dict[str, Any]]:
    """Some sessions' all-time rows, every measure (the walk reads only what it orders by)."""
    if not keys:
        return {}
    q = _Query(org_id)
    columns = ", ".join(f"{name} AS t_{name}" for name in _COLUMNS)
    sql = (f"SELECT session_id AS k, {columns} FROM session_totals FINAL WHERE org_id = {{org:UInt64}} "
           f"AND session_id IN {q.bind(keys, 'Array(String)')}")
    return {row["k"]: row for row in _run(sql, q, False)}


def _in_range(selection: Selection, walked: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The totals within the selection's range of some sessions walked, as grouped adds them up (the
    rollups, the raw rows at the ends), read only where their spans meet the range (sessions
    reaching past the start of a month end hours into it, not a month later); sessions with no
    request there are left out."""
    start, end = _bounds(selection)
    lo = max(start, min(row["t_first_at"] for row in walked))
    hi = min(end, max(row["t_last_at"] for row in walked) + timedelta(microseconds=1))
    narrow = Selection(selection.org, lo, hi) if (lo, hi) != (start, end) else selection
    keys = [row["k"] for row in walked]
    found = {}
    for first in range(0, len(keys), _PER_QUERY):
        q = _Query(selection.org.pk)
        parts, raw_only = _parts(q, narrow, "session", "value", None, values=keys[first:first + _PER_QUERY])
        for row in _run(_outer(parts, ()), q, raw_only):
            found[row["k"]] = row
    return found


def _place(row: dict[str, Any], column: str) -> tuple:
    """Where a session sorts: its `column` largest first, then its id as ClickHouse orders strings
    (their bytes: code points for UTF-8), so a page's last that sorts ahead of the last row walked
    is ahead of every row not walked, ties included."""
    value = row[column]
    return (-value.timestamp() if isinstance(value, datetime) else -value, row["k"])
