"""Log ids are UUIDv7: time-ordered (the primary key index takes new logs at its edge), unique and
random enough to be unguessable."""

import time
import uuid

from formats.ids import log_id


def test_log_ids_are_version_7_in_time_order_and_unique():
    before = int(time.time() * 1000)
    ids = [log_id() for _ in range(2000)]
    after = int(time.time() * 1000)
    parsed = [uuid.UUID(value) for value in ids]
    assert all(value.version == 7 and value.variant == uuid.RFC_4122 for value in parsed)
    assert all(before <= value.int >> 80 <= after for value in parsed)
    assert len(set(ids)) == len(ids)
    # Ordered by their millisecond; within one the rest is random (not a counter).
    assert [value.int >> 80 for value in parsed] == sorted(value.int >> 80 for value in parsed)
    assert len({value.int & ((1 << 62) - 1) for value in parsed}) == len(ids)


def test_a_log_id_for_a_given_moment_sorts_by_that_moment():
    early, late = log_id(1_700_000_000.0), log_id(1_700_000_000.002)
    assert uuid.UUID(early).int >> 80 == 1_700_000_000_000
    assert early < late  # text order is time order too
