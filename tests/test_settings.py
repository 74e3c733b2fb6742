import os
import subprocess
import sys

from heliconeproj.settings import parse_database_url


def test_sqlite_url_relative_and_absolute():
    assert parse_database_url("sqlite:////tmp/x.sqlite3")["NAME"] == "/tmp/x.sqlite3"
    assert parse_database_url("sqlite:///var/x.sqlite3")["NAME"].endswith("/var/x.sqlite3")


def test_postgres_url():
    db = parse_database_url("postgres://u:p%40ss@db.example:5433/helicone")
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["USER"], db["PASSWORD"], db["HOST"], db["PORT"], db["NAME"]) == ("u", "p@ss", "db.example", "5433", "helicone")


def test_debug_off_without_secret_key_fails_clearly():
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env["DEBUG"] = "0"
    result = subprocess.run(
        [sys.executable, "-c", "import heliconeproj.settings"], env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
