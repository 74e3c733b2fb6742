"""The rollups' quantile sketch (analytics/sketch.py): P50, P95 and P99 within 1 % of the exact
values, merges that equal the sketch of the union, stored and read back unchanged."""

import json
import math
import random

import pytest

from analytics.sketch import RELATIVE_ACCURACY, Sketch, merged


def exact_cont(values: list[float], q: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between ranks."""
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latencies(n: int, seed: int) -> list[float]:
    """What a gateway sees: most calls around a second, a slow tail, some cache hits near 0."""
    rng = random.Random(seed)
    values = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.05:
            values.append(rng.uniform(0.0, 2.0))  # cache hits and the like
        elif roll < 0.97:
            values.append(rng.lognormvariate(math.log(900), 0.6))
        else:
            values.append(rng.uniform(10_000, 120_000))  # long generations, timeouts
    return values


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_p50_p95_p99_are_within_one_percent_of_the_exact_values(seed):
    values = latencies(50_000, seed)
    sketch = Sketch().extend(values)
    for q in (0.5, 0.95, 0.99):
        exact = exact_cont(values, q)
        estimate = sketch.quantile(q)
        assert abs(estimate - exact) <= 0.01 * exact, (q, estimate, exact)
    assert sketch.count == len(values)
    assert sketch.mean == pytest.approx(sum(values) / len(values))
    assert (sketch.quantile(0), sketch.quantile(1)) == (min(values), max(values))


def test_a_merge_of_sketches_is_the_sketch_of_all_the_values():
    values = latencies(20_000, 7)
    parts = [values[i::5] for i in range(5)]  # five minutes' rollup rows of one hour
    whole = Sketch().extend(values)
    combined = merged(Sketch().extend(part).to_json() for part in parts)
    assert combined.buckets == whole.buckets and combined.zeros == whole.zeros
    assert combined.count == whole.count and combined.total == pytest.approx(whole.total)
    for q in (0.5, 0.95, 0.99):
        assert combined.quantile(q) == whole.quantile(q)


def test_removing_what_was_merged_gives_back_the_rest():
    kept, erased = latencies(5_000, 11), latencies(500, 12)
    sketch = Sketch().extend(kept).merge(Sketch().extend(erased))
    sketch.remove(Sketch().extend(erased))
    alone = Sketch().extend(kept)
    assert (sketch.buckets, sketch.zeros, sketch.count) == (alone.buckets, alone.zeros, alone.count)
    assert sketch.quantile(0.95) == alone.quantile(0.95)
    assert Sketch().extend([5.0]).remove(Sketch().extend([5.0])).quantile(0.5) is None


def test_a_stored_sketch_reads_back_the_same_through_json():
    sketch = Sketch().extend(latencies(3_000, 5) + [0.0, 0.0])
    stored = json.loads(json.dumps(sketch.to_json()))  # what a JSON column gives back
    again = Sketch.from_json(stored)
    assert (again.buckets, again.zeros, again.count, again.low, again.high) == (
        sketch.buckets, sketch.zeros, sketch.count, sketch.low, sketch.high)
    assert again.quantile(0.99) == sketch.quantile(0.99)


def test_empty_zero_and_missing_values():
    assert Sketch().quantile(0.5) is None and Sketch().mean is None
    assert Sketch.from_json(None).count == 0
    zeros = Sketch().extend([0.0, 0.0, 0.0])
    assert zeros.quantile(0.5) == 0.0 and zeros.quantile(0.99) == 0.0
    with_none = Sketch().extend([None, float("nan"), 10.0])  # time to first token is often absent
    assert with_none.count == 1 and with_none.quantile(0.5) == 10.0


def test_the_sketch_stays_small_whatever_the_volume():
    # Buckets grow with the spread of the values (log of max/min), not with their number.
    sketch = Sketch().extend(latencies(200_000, 9))
    assert len(sketch.buckets) < 1_500
    assert len(json.dumps(sketch.to_json())) < 20_000
    assert RELATIVE_ACCURACY <= 0.01


def test_merging_the_stored_json_equals_merging_sketches():
    """The log writer merges stored sketches as JSON (merge_json); a page reads them as Sketches."""
    from analytics.sketch import merge_json

    a = Sketch().extend(latencies(3000, seed=21))
    b = Sketch().extend(latencies(500, seed=22))
    joined = Sketch.from_json(merge_json(json.loads(json.dumps(a.to_json())), b.to_json()))
    both = Sketch.from_json(a.to_json()).merge(b)
    assert joined.buckets == both.buckets and joined.count == both.count == 3500
    assert (joined.low, joined.high, joined.zeros) == (both.low, both.high, both.zeros)
    assert joined.total == pytest.approx(both.total)
    assert merge_json({}, b.to_json()) == b.to_json() and merge_json(a.to_json(), {}) == a.to_json()
