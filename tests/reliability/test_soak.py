"""`make soak` in 30 seconds: mixed traffic at a steady rate through real daphne
processes; no error of ours, memory flat after warm-up, every request logged once.

Scaled (REDIS_URL set): two daphne processes and a run_log_writer on the test
database and Redis. Embedded: one daphne with its in-process writer on the
test SQLite file (see bench/soak.py for why one).
"""

import json
import os

import pytest
from django.db import connection

from bench.soak import render, run_soak
from tests.base import redis_url
from tests.servers import test_database_url as database_url

pytestmark = pytest.mark.django_db(transaction=True)


def test_thirty_second_soak_meets_the_targets(transactional_db, tmp_path):
    scaled = connection.vendor == "postgresql" and bool(os.environ.get("REDIS_URL"))
    result = run_soak("scaled" if scaled else "embedded", duration=30, rate=60, warmup=10,
                      database_url=database_url(), redis_url=redis_url() if scaled else None)
    (tmp_path / "soak.json").write_text(json.dumps(result, indent=2))
    print(render(result))
    assert result["errors_of_ours"] == 0, result["error_samples"]
    assert result["memory_growth_max_pct"] < 10, result["memory"]
    assert result["logs_missing"] == 0 and result["logs_unexpected"] == 0
    assert result["log_rows"] == result["requests_sent"]
    # Every scenario ran and did what it is for.
    scenarios = result["by_scenario"]
    assert scenarios["cached"]["cache_hits"] > 0
    assert scenarios["rate_limited"]["statuses"].get("429", 0) > 0
    assert set(scenarios["failing"]["statuses"]) == {"502", "503"}
    assert result["daphne_exit_codes"] and set(result["daphne_exit_codes"].values()) == {0}
