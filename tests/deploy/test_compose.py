"""Static checks of the deployment: docker-compose.yaml, Dockerfile and .env.example.

No Docker engine runs in CI, so nothing here starts a container. The files are read
as data, validated against the Compose Specification schema (``compose_spec.json``,
see PROVENANCE.md) and, where the ``docker-compose`` binary is installed, passed
through ``docker-compose config``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from dotenv import dotenv_values

from include.living_review import settings
from include.living_review.connections import client_settings

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
SCHEMA_FILE = HERE / "compose_spec.json"

PROJECT_DIR = "/opt/airflow/project"
DEFAULT_SERVICES = {"postgres", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "airflow-init"}
PROFILES = {"celery": {"redis", "airflow-worker"}, "dev": {"mailpit"}}
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-init", "airflow-worker"}
ONE_SHOT = {"airflow-init"}

# $$ is Compose's escape for a literal $; ${VAR}, ${VAR:-default} and ${VAR-default} substitute.
_INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}")
_CONN_VAR = re.compile(r"\bAIRFLOW_CONN_([A-Z0-9_]+)\b")


def resolve(value: Any, env: Mapping[str, str | None] | None = None) -> Any:
    """Compose's interpolation of one value, as far as this file uses it."""
    if not isinstance(value, str):
        return value
    env = env or {}

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        current = env.get(match.group("name"))
        if match.group("op") == ":-" and not current:
            return match.group("default")
        if match.group("op") == "-" and current is None:
            return match.group("default")
        return current or ""

    return _INTERPOLATION.sub(substitute, value)


def code_connection_ids() -> set[str]:
    return set(settings.SOURCE_CONNECTIONS.values()) | {settings.SMTP_CONN_ID, settings.SLACK_CONN_ID,
                                                        settings.STORAGE_CONN_ID}


def env_var(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def env_example() -> dict[str, str | None]:
    return dict(dotenv_values(ENV_EXAMPLE))


def init_script(services: dict[str, dict[str, Any]]) -> str:
    command = services["airflow-init"]["command"]
    return command if isinstance(command, str) else "\n".join(command)


def host_path(service: dict[str, Any], container_path: str) -> Path:
    """The host file a bind mount of ``service`` puts at ``container_path``."""
    best: tuple[str, str] | None = None
    for volume in service.get("volumes", []):
        source, target = resolve(volume).split(":")[:2]
        if source.startswith((".", "/")) and (container_path == target or container_path.startswith(target + "/")):
            if best is None or len(target) > len(best[1]):
                best = (source, target)
    assert best is not None, f"no bind mount provides {container_path}"
    source, target = best
    return (ROOT / source / container_path[len(target):].lstrip("/")).resolve()


# -- (1) shape of the compose file -------------------------------------------------------

def test_default_stack_has_the_airflow_3_services(services: dict[str, dict[str, Any]]) -> None:
    default = {name for name, service in services.items() if not service.get("profiles")}
    assert default == DEFAULT_SERVICES


@pytest.mark.parametrize(("profile", "members"), sorted(PROFILES.items()))
def test_profiles(services: dict[str, dict[str, Any]], profile: str, members: set[str]) -> None:
    assert {name for name, service in services.items() if profile in service.get("profiles", [])} == members


def test_airflow_services_run_their_component(services: dict[str, dict[str, Any]]) -> None:
    expected = {"airflow-apiserver": "api-server", "airflow-scheduler": "scheduler",
                "airflow-dag-processor": "dag-processor", "airflow-triggerer": "triggerer",
                "airflow-worker": "celery worker"}
    assert {name: services[name]["command"] for name in expected} == expected


def test_every_long_running_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    missing = [name for name, service in services.items()
               if name not in ONE_SHOT and not service.get("healthcheck", {}).get("test")]
    assert not missing
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    api_check = " ".join(services["airflow-apiserver"]["healthcheck"]["test"])
    assert re.search(r"http://localhost:8080/api/v2/(monitor/health|version)\b", api_check)
    assert any(port.endswith(":8080") for port in services["airflow-apiserver"]["ports"])


def test_scheduler_healthcheck_server_is_enabled(services: dict[str, dict[str, Any]]) -> None:
    scheduler = services["airflow-scheduler"]
    assert "localhost:8974/health" in " ".join(scheduler["healthcheck"]["test"])
    assert scheduler["environment"]["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"


def test_startup_order(services: dict[str, dict[str, Any]]) -> None:
    for name in AIRFLOW_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["postgres"] == {"condition": "service_healthy"}, name
        if name not in ONE_SHOT:
            assert depends["airflow-init"] == {"condition": "service_completed_successfully"}, name
    assert services["airflow-worker"]["depends_on"]["redis"] == {"condition": "service_healthy"}


def test_default_services_never_wait_for_a_profile_service(services: dict[str, dict[str, Any]]) -> None:
    # Compose refuses to start a service whose dependency is switched off by a profile.
    for name in DEFAULT_SERVICES:
        for dependency in services[name].get("depends_on", {}):
            assert not services[dependency].get("profiles"), f"{name} depends on {dependency}"


def test_local_executor_by_default_and_switchable(services: dict[str, dict[str, Any]],
                                                  env_example: dict[str, str | None]) -> None:
    for name in AIRFLOW_SERVICES:
        executor = services[name]["environment"]["AIRFLOW__CORE__EXECUTOR"]
        assert resolve(executor) == "LocalExecutor"
        assert resolve(executor, env_example) == "LocalExecutor"
        assert resolve(executor, {"AIRFLOW__CORE__EXECUTOR": "CeleryExecutor"}) == "CeleryExecutor"
    assert "AIRFLOW__CORE__EXECUTOR=CeleryExecutor" in ENV_EXAMPLE.read_text(encoding="utf-8")


def test_one_jwt_secret_shared_by_every_airflow_service(services: dict[str, dict[str, Any]],
                                                        env_example: dict[str, str | None]) -> None:
    secrets = {services[name]["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"] for name in AIRFLOW_SERVICES}
    assert len(secrets) == 1
    (secret,) = secrets
    assert secret.startswith("${AIRFLOW__API_AUTH__JWT_SECRET:-")
    assert resolve(secret), "needs a dev default so a bare `docker compose up` works"
    assert env_example.get("AIRFLOW__API_AUTH__JWT_SECRET")


def test_execution_api_url_points_at_the_apiserver(services: dict[str, dict[str, Any]]) -> None:
    for name in AIRFLOW_SERVICES:
        url = resolve(services[name]["environment"]["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert url == "http://airflow-apiserver:8080/execution/", name


def test_project_root_is_the_import_root_in_every_container(services: dict[str, dict[str, Any]]) -> None:
    for name in AIRFLOW_SERVICES:
        service = services[name]
        environment = service["environment"]
        assert environment["PYTHONPATH"] == PROJECT_DIR
        for folder, key in (("dags", "AIRFLOW__CORE__DAGS_FOLDER"), ("plugins", "AIRFLOW__CORE__PLUGINS_FOLDER")):
            assert environment[key] == f"{PROJECT_DIR}/{folder}"
            assert host_path(service, environment[key]) == ROOT / folder
        for package in ("include", "data_quality"):
            assert host_path(service, f"{PROJECT_DIR}/{package}") == ROOT / package
        config = resolve(environment["LIVING_REVIEW_CONFIG"])
        assert host_path(service, config) == settings.DEFAULT_CONFIG_PATH


def test_data_dir_is_a_volume_every_airflow_service_shares(compose: dict[str, Any],
                                                           services: dict[str, dict[str, Any]]) -> None:
    for name in AIRFLOW_SERVICES:
        service = services[name]
        data_dir = resolve(service["environment"][settings.DATA_DIR_ENV])
        assert host_path(service, data_dir) == ROOT / "data"
    named = {resolve(volume).split(":")[0] for service in services.values() for volume in service.get("volumes", [])
             if not resolve(volume).startswith((".", "/"))}
    assert named <= set(compose["volumes"])


def test_image_is_built_from_the_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    for name in AIRFLOW_SERVICES:
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_init_migrates_checks_config_and_creates_the_admin(services: dict[str, dict[str, Any]]) -> None:
    script = init_script(services)
    for step in ("airflow db migrate", "airflow pools import", "python -m include.living_review.cli check-config",
                 "SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"):
        assert step in script
    assert "set -euo pipefail" in script, "a failed step must stop the other services from starting"
    assert services["airflow-init"]["restart"] == "no"


def test_init_script_is_valid_bash(services: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    script = tmp_path / "init.sh"
    script.write_text(resolve(init_script(services)), encoding="utf-8")
    result = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr


def test_mailpit_is_the_dev_smtp_server(services: dict[str, dict[str, Any]],
                                        env_example: dict[str, str | None]) -> None:
    mailpit = services["mailpit"]
    assert resolve(mailpit["image"]).startswith("axllent/mailpit:")
    container_ports = {port.rsplit(":", 1)[1] for port in mailpit["ports"]}
    assert container_ports == {"1025", "8025"}
    smtp = json.loads(env_example[env_var(settings.SMTP_CONN_ID)] or "{}")
    assert (smtp["conn_type"], smtp["host"], smtp["port"]) == ("smtp", "mailpit", 1025)
    assert smtp["extra"]["from_email"]


# -- (2) the Compose Specification schema -----------------------------------------------

@pytest.fixture(scope="module")
def compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft201909Validator.check_schema(schema)
    # No format checker: the schema's "duration" means Compose's "10s", not ISO 8601.
    return jsonschema.Draft201909Validator(schema)


def test_schema_copy_is_the_one_recorded_in_provenance() -> None:
    digest = hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest()
    assert digest in (HERE / "PROVENANCE.md").read_text(encoding="utf-8")


def test_compose_file_matches_the_compose_spec(compose: dict[str, Any],
                                               compose_validator: jsonschema.protocols.Validator) -> None:
    errors = [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
              for error in compose_validator.iter_errors(compose)]
    assert not errors


def test_the_schema_does_reject_a_broken_file(compose: dict[str, Any],
                                              compose_validator: jsonschema.protocols.Validator) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["postgres"]["healthcheck"]["intervall"] = "10s"
    broken["services"]["airflow-init"]["depends_on"]["postgres"]["condition"] = "service_ready"
    assert len(list(compose_validator.iter_errors(broken))) == 2


# -- (3) docker-compose itself --------------------------------------------------------

def _docker_compose(*args: str, env_file: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose); "
                    "the schema test above covers the file's structure")
    # A clean environment so a developer's exported variables cannot mask a missing default.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    return subprocess.run([binary, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE),
                           "--env-file", str(env_file), "config", *args],
                          capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)


@pytest.mark.parametrize("env_name", [".env.example", "no .env"])
def test_docker_compose_config_accepts_the_file(env_name: str, tmp_path: Path) -> None:
    env_file = ENV_EXAMPLE if env_name == ".env.example" else tmp_path / "empty.env"
    if env_name == "no .env":
        env_file.write_text("")
    result = _docker_compose("-q", env_file=env_file, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr


def test_docker_compose_reads_the_connections_as_json(tmp_path: Path,
                                                      env_example: dict[str, str | None]) -> None:
    result = _docker_compose(env_file=ENV_EXAMPLE, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    environment = yaml.safe_load(result.stdout)["services"]["airflow-scheduler"]["environment"]
    for conn_id in code_connection_ids():
        # Same value python-dotenv reads, so the quoting in .env.example survives compose.
        assert (environment[env_var(conn_id)] or "") == (env_example[env_var(conn_id)] or ""), conn_id


# -- (4) connections -----------------------------------------------------------------

def test_compose_passes_exactly_the_code_connections(services: dict[str, dict[str, Any]]) -> None:
    # Equality, not inclusion: the file names each variable explicitly (no env_file), so
    # a connection missing here would be set in .env and silently never reach a task.
    named = set(_CONN_VAR.findall(COMPOSE_FILE.read_text(encoding="utf-8")))
    assert {name.lower() for name in named} == code_connection_ids()
    for name in AIRFLOW_SERVICES:
        passed = {key for key in services[name]["environment"] if key.startswith("AIRFLOW_CONN_")}
        assert passed == {env_var(conn_id) for conn_id in code_connection_ids()}, name


def test_env_example_lists_exactly_the_code_connections(env_example: dict[str, str | None]) -> None:
    named = {name.lower() for name in _CONN_VAR.findall(ENV_EXAMPLE.read_text(encoding="utf-8"))}
    assert named == code_connection_ids()
    assert {key[len("AIRFLOW_CONN_"):].lower() for key in env_example if key.startswith("AIRFLOW_CONN_")} \
        == code_connection_ids()


@pytest.mark.parametrize("source", sorted(settings.SOURCE_CONNECTIONS))
def test_env_example_source_connection_is_the_public_default(env_example: dict[str, str | None],
                                                             source: str) -> None:
    conn_id = settings.SOURCE_CONNECTIONS[source]
    conn = json.loads(env_example[env_var(conn_id)] or "")
    assert conn["conn_type"] == "http"
    resolved = client_settings(conn_id, host=conn.get("host"), login=conn.get("login"),
                               password=conn.get("password"), extra=conn.get("extra"))
    assert resolved.base_url == settings.DEFAULT_BASE_URLS[conn_id]
    # A placeholder key would be sent to the API and rejected; empty means "no key".
    assert resolved.api_key is None


def test_env_example_slack_connection_is_empty_or_a_webhook(env_example: dict[str, str | None]) -> None:
    value = env_example[env_var(settings.SLACK_CONN_ID)]
    assert not value or json.loads(value)["conn_type"] == "slackwebhook"


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [text for key, value in node.items() for text in _strings(key) + _strings(value)]
    if isinstance(node, list):
        return [text for item in node for text in _strings(item)]
    return []


def test_env_example_documents_every_compose_variable(compose: dict[str, Any],
                                                      env_example: dict[str, str | None]) -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    used = {match.group("name") for value in _strings(compose) for match in _INTERPOLATION.finditer(value)
            if match.group("name")}
    undocumented = {name for name in used if not re.search(rf"^#?\s*{name}=", text, re.MULTILINE)}
    assert not undocumented
    for name in ("AIRFLOW_UID", settings.DATA_DIR_ENV, settings.CONFIG_ENV, "AIRFLOW__API_AUTH__JWT_SECRET"):
        assert env_example.get(name), name


# -- (5) the image --------------------------------------------------------------------

def _requirement_pin(name: str) -> str:
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(rf"\s*{re.escape(name)}==(\S+)\s*(#.*)?", line, re.IGNORECASE)
        if match:
            return match.group(1)
    raise AssertionError(f"{name} is not pinned in requirements.txt")


def test_dockerfile_base_image_matches_the_airflow_pin() -> None:
    froms = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(encoding="utf-8"), re.MULTILINE)
    assert len(froms) == 1
    match = re.fullmatch(r"apache/airflow:(?P<airflow>\d+\.\d+\.\d+)-python(?P<python>\d+\.\d+)", froms[0])
    assert match, froms[0]
    assert match.group("airflow") == _requirement_pin("apache-airflow")
    assert match.group("python") == f"{sys.version_info.major}.{sys.version_info.minor}", \
        "the image must run the Python the test suite runs"


def test_dockerfile_installs_requirements_as_the_airflow_user() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    copy = next(i for i, line in enumerate(lines) if re.match(r"COPY\b.*\brequirements\.txt\s+(\S+)$", line))
    target = lines[copy].split()[-1]
    install = next(i for i, line in enumerate(lines) if line.startswith("RUN pip install"))
    assert copy < install
    assert "--no-cache-dir" in lines[install]
    assert re.search(rf"-r\s+{re.escape(target)}(\s|$)", lines[install])
    users = [line.split()[1] for line in lines[:install] if line.startswith("USER ")]
    assert users and users[-1] == "airflow"
    assert f"PYTHONPATH={PROJECT_DIR}" in DOCKERFILE.read_text(encoding="utf-8")


# -- (6) pools and the config check ---------------------------------------------------

def test_init_imports_a_pool_for_every_source(services: dict[str, dict[str, Any]]) -> None:
    match = re.search(r"airflow pools import\s+(\S+)", init_script(services))
    assert match
    pools_file = host_path(services["airflow-init"], match.group(1))
    assert pools_file == ROOT / "include" / "pools.json"
    pools = json.loads(pools_file.read_text(encoding="utf-8"))
    for source in settings.SOURCE_CONNECTIONS:
        pool = pools.get(settings.pool_for(source))
        assert pool is not None, f"no pool {settings.pool_for(source)} for {source}"
        assert isinstance(pool["slots"], int) and pool["slots"] >= 1


def test_init_config_check_command_exists() -> None:
    spec = importlib.util.find_spec("include.living_review.cli")
    if spec is None or spec.origin is None:
        pytest.skip("include/living_review/cli.py is not in this checkout yet")
    assert "check-config" in Path(spec.origin).read_text(encoding="utf-8")
