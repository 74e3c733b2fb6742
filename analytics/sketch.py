"""A mergeable quantile sketch for latencies (DDSketch's logarithmic buckets).

Rollups keep one sketch per bucket of time and dimensions; a page merges the sketches of the
range it shows and reads P50, P95 and P99 from the result, without reading a raw row. A value
x > 0 falls in bucket ceil(log_gamma(x)) with gamma = (1 + a) / (1 - a); every value of a
bucket is within a relative error `a` of the bucket's representative value, so any quantile
read from a sketch is within `a` of the exact quantile (Masson, Rim and Lee, "DDSketch",
VLDB 2019). Merging adds bucket counts, so a sketch of a merge is the merge of the sketches.

Pure Python, no Django: stored as JSON (`to_json`, `from_json`), which both SQLite and
PostgreSQL keep. Values at or below MIN_VALUE (0 ms and the like) share one bucket.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

# 0.5 %: half the 1 % the pages promise, so interpolated exact values (percentile_cont) and
# rank-based ones both stay within 1 % of what the sketch reads.
RELATIVE_ACCURACY = 0.005
MIN_VALUE = 1e-3  # ms: one microsecond
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = LOG_GAMMA = math.log(_GAMMA)
_ZERO = "z"  # the key of the bucket of values at or below MIN_VALUE


def bucket_of(value: float) -> int | None:
    """The bucket index of a value; None for values at or below MIN_VALUE."""
    if value <= MIN_VALUE:
        return None
    return math.ceil(math.log(value) / _LOG_GAMMA)


def bucket_value(index: int) -> float:
    """The value a bucket stands for: within RELATIVE_ACCURACY of every value in it."""
    return 2 * _GAMMA ** index / (_GAMMA + 1)


class Sketch:
    __slots__ = ("buckets", "zeros", "count", "total", "low", "high")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.zeros = 0
        self.count = 0
        self.total = 0.0  # the sum, for means
        self.low = math.inf
        self.high = -math.inf

    def add(self, value: float, count: int = 1) -> None:
        if value is None or count <= 0 or value != value:  # None and NaN are not measurements
            return
        self.add_indexed(bucket_of(value), value, count)

    def add_indexed(self, index: int | None, value: float, count: int = 1) -> None:
        """add() with the value's bucket already known (one log counts in many sketches)."""
        if index is None:
            self.zeros += count
        else:
            self.buckets[index] = self.buckets.get(index, 0) + count
        self.count += count
        self.total += value * count
        self.low = min(self.low, value)
        self.high = max(self.high, value)

    def extend(self, values: Iterable[float]) -> "Sketch":
        for value in values:
            self.add(value)
        return self

    def merge(self, other: "Sketch") -> "Sketch":
        for index, count in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + count
        self.zeros += other.zeros
        self.count += other.count
        self.total += other.total
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)
        return self

    def remove(self, other: "Sketch") -> "Sketch":
        """Take a sketch merged earlier out again (an erase or a purge of the logs it counted).
        An extreme that may have been taken out becomes its bucket's value (within the accuracy)."""
        for index, count in other.buckets.items():
            left = self.buckets.get(index, 0) - count
            if left > 0:
                self.buckets[index] = left
            else:
                self.buckets.pop(index, None)
        self.zeros = max(0, self.zeros - other.zeros)
        self.count = max(0, self.count - other.count)
        self.total = self.total - other.total if self.count else 0.0
        if not self.count:
            self.low, self.high = math.inf, -math.inf
            return self
        if other.count and other.low <= self.low:
            self.low = 0.0 if self.zeros else bucket_value(min(self.buckets))
        if other.count and other.high >= self.high:
            self.high = bucket_value(max(self.buckets)) if self.buckets else MIN_VALUE
        return self

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0 <= q <= 1) as PostgreSQL's percentile_cont defines it (interpolated
        between the two nearest ranks), within RELATIVE_ACCURACY; None when empty."""
        if not self.count:
            return None
        rank = q * (self.count - 1)
        low = math.floor(rank)
        below = self._value_at(low)
        if rank == low or low + 1 >= self.count:
            return below
        above = self._value_at(low + 1)
        return below + (above - below) * (rank - low)

    def _value_at(self, rank: int) -> float:
        """The value of the rank-th smallest measurement (0-based), within RELATIVE_ACCURACY."""
        if rank >= self.count - 1 and self.high != -math.inf:
            return self.high  # the extremes are kept exactly
        if rank <= 0 and self.low != math.inf:
            return self.low
        if rank < self.zeros:
            return max(self.low, 0.0) if self.low != math.inf else 0.0
        seen = self.zeros
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen > rank:
                # Never outside what was measured.
                return min(max(bucket_value(index), self.low), self.high)
        return self.high

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {str(index): count for index, count in self.buckets.items()}
        if self.zeros:
            data[_ZERO] = self.zeros
        if self.count:
            data["n"], data["s"], data["lo"], data["hi"] = self.count, self.total, self.low, self.high
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "Sketch":
        sketch = cls()
        if not data:
            return sketch
        for key, value in data.items():
            if key == _ZERO:
                sketch.zeros = int(value)
            elif key not in ("n", "s", "lo", "hi"):
                sketch.buckets[int(key)] = int(value)
        sketch.count = int(data.get("n", sketch.zeros + sum(sketch.buckets.values())))
        sketch.total = float(data.get("s", 0.0))
        sketch.low = float(data.get("lo", math.inf))
        sketch.high = float(data.get("hi", -math.inf))
        return sketch


def merge_json(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    """Sketch.merge on the stored JSON itself (the log writer's hot path: no parsing of bucket keys)."""
    if not a:
        return b or {}
    if not b:
        return a
    return add_json(dict(a), b)


def add_json(out: dict[str, Any], b: dict[str, Any] | None) -> dict[str, Any]:
    """merge_json into `out` itself (a page adding up many stored sketches)."""
    if not b:
        return out
    low, high = out.get("lo"), out.get("hi")
    get = out.get
    for key, value in b.items():  # bucket counts, zeros ("z"), the count ("n") and the sum ("s") add up
        out[key] = get(key, 0) + value
    if "lo" in b:  # the extremes do not: put them right
        out["lo"] = b["lo"] if low is None else min(low, b["lo"])
    if "hi" in b:
        out["hi"] = b["hi"] if high is None else max(high, b["hi"])
    return out


def merged(sketches: Iterable[dict[str, Any] | None]) -> Sketch:
    """One sketch of many stored ones (what a page does with a range of rollup rows)."""
    result = Sketch()
    for data in sketches:
        result.merge(Sketch.from_json(data))
    return result
