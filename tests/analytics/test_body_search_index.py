"""The optional trigram index for body search: off after migrate, built and dropped on demand."""

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)


def body_indexes() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'analytics_requestlog'")
        return {name for (name,) in cursor.fetchall() if name.endswith("_body_trgm")}


def test_enable_and_disable_on_postgresql():
    if connection.vendor != "postgresql":
        with pytest.raises(CommandError, match="PostgreSQL only"):
            call_command("body_search_index", "--enable")
        return
    assert body_indexes() == set()  # the writer runs at full speed by default
    call_command("body_search_index", "--enable")
    assert body_indexes() == {"log_req_body_trgm", "log_resp_body_trgm"}
    call_command("body_search_index", "--disable")
    assert body_indexes() == set()
