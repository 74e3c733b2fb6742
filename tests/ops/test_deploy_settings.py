"""`manage.py check --deploy` passes with the production settings docs/operations.md documents."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def documented_settings() -> dict[str, str]:
    """The variables of the "Settings for the internet" block in docs/operations.md."""
    readme = (ROOT / "docs" / "operations.md").read_text()
    section = readme.split("### Settings for the internet", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    values = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
    assert values.pop("SECRET_KEY").startswith("<")  # a placeholder: the reader makes their own
    return {**values, "SECRET_KEY": secrets.token_urlsafe(50)}


def check_deploy(tmp_path, settings: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "BEHIND_", "ALLOWED_HOSTS", "DEBUG"))}
    env.update(VAR_DIR=str(tmp_path), **settings)
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_the_documented_production_settings_pass_check_deploy(tmp_path):
    settings = documented_settings()
    assert settings["DEBUG"] == "0" and settings["SECURE_COOKIES"] == "1"
    done = check_deploy(tmp_path, settings)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_without_them_check_deploy_names_what_is_missing(tmp_path):
    done = check_deploy(tmp_path, {"DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50)})
    assert done.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in done.stderr
