"""The sessions list from ClickHouse, largest or newest first, walked over the sessions' all-time
rows (`session_totals`, analytics.clickhouse.schema) as analytics.rollup_reads walks the SQL ones
(_alltime_page), instead of adding up every session of the range from the rollups.

The walk reads sessions by an upper bound of their measure in the range, largest first (ties by
id): the sum of their rows in session_totals (one per insert until merges add them up) whose span
reaches into the range, without FINAL. Every log of the range is in such a row, and a row that
takes logs back (a change's, with no span) is left out, so the bound is never below the measure
(a last request in the range is the session's last). The rows left out are most of the table
for a short range: the bound is read from the rows the range meets, not from every session ever
(at 100M logs and 8.3M sessions, 54 ms for a day against ~900 ms with FINAL). The walk stops once
the page's last session sorts ahead of the last bound read: no session not yet read can enter
the page. The sessions walked are then read whole (all their rows, by id): one whose first and last
requests both lie in the range counts its all-time row as it is; one reaching past either end
has its measure in the range added up from the rollups and the raw rows at the ends
(reads._parts, as grouped adds them). A change cannot take a session's first or last request
back (changes.py): its span there may be wider than its logs', never narrower, so a session
taken as wholly in the range is.

A search walks the sessions' all-time rows instead (FINAL, largest first by their all-time
measure, which bounds the range's as well): a session is found by a name it was given before the
range, and matching a name means reading every session's name anyway.
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
# Sessions a walk reads first: a search's (FINAL: every row of the org is read anyway), a list's (its
# sessions are then read by id, a granule each: 500 random ids cost ~150 ms at 8.3M sessions), or
# LIST_AHEAD times the sessions up to the page's end (a second walk costs more than reading more by id).
CHUNK = 500
LIST_CHUNK = 100
LIST_AHEAD = 2
# Rows walked in order before the walk reads every remaining candidate at once (a search matching
# few sessions of many, a deep page, ties).
WALK_LIMIT = 20_000
# Sessions whose range totals one query adds up (their ids go as one parameter, a form field).
_PER_QUERY = 2_000
# A session_totals row's measures, as reads._outer adds them up.
_MEASURES = ", ".join((*SCALARS, "first_at", "last_at"))


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
    whole: dict[str, dict[str, Any] | None] = {}  # the sessions walked: their all-time rows (None: erased)
    in_range: dict[str, dict[str, Any] | None] = {}  # the sessions reaching past the range: their totals in it
    size = CHUNK if contains else max(LIST_CHUNK, LIST_AHEAD * want)
    while True:
        # Each read from the top, in one statement: rows the writer moves meanwhile are not skipped
        # between two reads. Four times more each time.
        walked = _walk(selection.org.pk, start, end, ORDERS[field], contains, names, size)
        if walked is None:
            return None
        if contains:  # their all-time rows, with the measure they are walked by and the span
            whole.update((row["k"], row) for row in walked)
        else:
            fresh = [row["k"] for row in walked if row["k"] not in whole]
            found = _rows(selection.org.pk, fresh)
            whole.update({key: found.get(key) for key in fresh})
        exact: dict[str, dict[str, Any]] = {}
        reaching = []
        for key in (row["k"] for row in walked):
            row = whole.get(key)
            if row is None or row["t_requests"] <= 0:
                continue  # erased
            if row["t_first_at"] >= start and row["t_last_at"] < end:
                exact[key] = row
            elif key not in in_range:
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
    # A search walked the page's sessions wholly in the range by a few columns: every measure now.
    full = _rows(selection.org.pk, [key for key in keys if key not in in_range]) if contains else whole
    rows = [row for row in (in_range.get(key) or full.get(key) for key in keys) if row is not None]
    return ([{"key": row["k"], **_finish(row, ()), "first": row["t_first_at"], "last": row["t_last_at"],
              "cost": Decimal(row["t_cost_usd"] or 0)} for row in rows], len(ordered) > offset + limit)


def _walk(org_id: int, start: datetime, end: datetime, column: str, contains: str, names: bool,
          size: int | None) -> list[dict[str, Any]] | None:
    """The org's sessions that meet [start, end), the first `size` (all with None), largest first
    by `column`, ties by id; None while session_totals is not filled (its FILLED row, read by the
    same query). A list walks them by the bound of the module's doc, the rows meeting the range
    alone; a search (`contains` in the id, or the name with `names`) by their all-time rows, FINAL
    (a name a session was given before the range counts; a sorted merge of the parts, cheaper than
    grouping every session), with their span and requests."""
    q = _Query(org_id)
    if contains:
        keep = ["requests > 0", f"last_at >= {q.bind(start, _DT64)}", f"first_at < {q.bind(end, _DT64)}"]
        text = q.bind(contains, "String")
        match = f"positionCaseInsensitiveUTF8(session_id, {text}) > 0"
        if names:
            match += f" OR positionCaseInsensitiveUTF8(name, {text}) > 0"
        keep.append(f"({match})")
        columns = ", ".join(f"{name} AS t_{name}" for name in dict.fromkeys(("requests", "first_at", "last_at",
                                                                               column)))
        sql = (f"SELECT {FILLED} AS filled, session_id AS k, {columns} FROM session_totals FINAL "
               f"WHERE org_id IN ({{org:UInt64}}, 0) AND ({FILLED} OR {' AND '.join(keep)}) "
               f"ORDER BY filled DESC, t_{column} DESC, k")
    else:
        keep = [f"last_at >= {q.bind(start, _DT64)}", f"first_at < {q.bind(end, _DT64)}"]
        bound = "max(last_at)" if column == "last_at" else f"sum({column})"
        sql = (f"SELECT {FILLED} AS filled, session_id AS k, {bound} AS t_{column} FROM session_totals "
               f"WHERE org_id IN ({{org:UInt64}}, 0) AND ({FILLED} OR {' AND '.join(keep)}) "
               f"GROUP BY org_id, session_id ORDER BY filled DESC, t_{column} DESC, k")
    rows = _run(sql + (f" LIMIT {size + 1}" if size else ""), q, False)
    if not rows or not rows[0]["filled"]:
        return None
    return rows[1:]


def _rows(org_id: int, keys: list[str]) -> dict[str, dict[str, Any]]:
    """Some sessions' all-time rows, every measure: their rows added up as reads._outer adds up a
    range's parts (cheaper than FINAL); a session whose every log was erased is left out."""
    found = {}
    for first in range(0, len(keys), _PER_QUERY):
        q = _Query(org_id)
        part = (f"SELECT session_id AS k, {_MEASURES} FROM session_totals WHERE org_id = {{org:UInt64}} "
                f"AND session_id IN {q.bind(keys[first:first + _PER_QUERY], 'Array(String)')}")
        found.update((row["k"], row) for row in _run(_outer([part], ()), q, False))
    return found


def _in_range(selection: Selection, walked: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The totals within the selection's range of some sessions walked, as grouped adds them up (the
    rollups, the raw rows at the ends), read only where their spans meet the range (sessions
    reaching past the start of a month end hours into it, not a month later); sessions with no
    request there are left out. The narrower range starts and ends on whole hours (or the range's
    own ends), so that it reads each hour as the whole range reads it: from the rollups or from the
    raw rows, which differ on a session's last request after a log of it was moved or erased (the
    rollups keep its moment: changes.py)."""
    start, end = _bounds(selection)
    lo = max(start, rollups.floor(min(row["t_first_at"] for row in walked), "h"))
    hi = min(end, rollups.floor(max(row["t_last_at"] for row in walked), "h") + timedelta(hours=1))
    if lo >= hi:
        return {}  # (none of them meets the range)
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
