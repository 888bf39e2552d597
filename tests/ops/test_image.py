"""One Dockerfile for every image, non-root, built for the supervisor's service/port pairs, with the
process environment the distributed mode gives its children. (No engine here: nothing is built.)"""

from __future__ import annotations

import os
import re
import subprocess
import uuid

import psycopg2
import pytest

from shopkit import testing
from tools.supervisor import PROCESSES, SERVICES

from .conftest import REPO_ROOT
from .distributed import cluster

pytestmark = pytest.mark.ops

DOCKERFILE = REPO_ROOT / "docker" / "service.Dockerfile"


def stages() -> dict[str, str]:
    text = DOCKERFILE.read_text()
    parts = re.split(r"^FROM .* AS (\w+)$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_one_dockerfile_replaces_the_per_service_ones() -> None:
    assert sorted(p.name for p in (REPO_ROOT / "docker").glob("*Dockerfile*")) == ["service.Dockerfile"]
    assert list(REPO_ROOT.glob("services/*/Dockerfile")) == []
    assert list(stages()) == ["runtime", "sandbox", "service"]  # service last: the default target


def test_images_run_as_an_unprivileged_user() -> None:
    runtime = stages()["runtime"]
    assert "useradd --system --uid 10001" in runtime
    for name in ("sandbox", "service"):
        assert re.search(r"^USER 10001$", stages()[name], re.M), name


def test_the_image_accepts_exactly_the_supervisors_services_and_ports() -> None:
    (pairs,) = re.findall(r"^\s+((?:\w+:\d+\|?)+)\) ;;", stages()["service"], re.M)
    running = cluster()
    assert dict(p.split(":") for p in pairs.split("|")) == {s: str(running.port(s)) for s in (*SERVICES, "gateway")}
    # Its default command is the supervisor's, with the image's SERVICE and PORT.
    command = re.search(r'^CMD \["sh", "-c", "exec (.*)"\]$', stages()["service"], re.M)
    assert command
    for service in (*SERVICES, "gateway"):
        line = command.group(1).replace('\\"$SHOP_SERVICE\\"', service)
        line = line.replace('\\"$SHOP_SERVICE_PORT\\"', str(running.port(service)))
        assert line.split() == running.command(service)
    assert PROCESSES["stripe-sandbox"][0] in stages()["sandbox"]


def test_images_give_the_supervisors_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    supervised = cluster().environment()
    runtime = stages()["runtime"]
    for key in ("MALLOC_ARENA_MAX", "PYTHONUNBUFFERED"):
        assert f"{key}={supervised[key]}" in runtime, key


def test_the_build_context_leaves_out_local_state_and_secrets() -> None:
    ignored = set((REPO_ROOT / ".dockerignore").read_text().split())
    assert {".env", ".env.*", ".venv", ".venv-ops", ".git", "var", "**/tests"} <= ignored


@pytest.mark.integration
def test_the_postgres_init_script_makes_a_schema_per_service_owned_by_its_role() -> None:
    server = testing.postgres_server_url()
    scratch = f"shop_init_{uuid.uuid4().hex[:8]}"
    parts = psycopg2.extensions.parse_dsn(server)
    env = {
        **os.environ,
        "POSTGRES_USER": parts.get("user", "postgres"),
        "PGHOST": parts.get("host", "127.0.0.1"),
        "PGPORT": parts.get("port", "5432"),
        "SHOP_DB_NAME": scratch,
    }
    if "password" in parts:
        env["PGPASSWORD"] = parts["password"]
    script = REPO_ROOT / "docker" / "postgres" / "10-shop-schemas.sh"
    try:
        result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        connection = psycopg2.connect(testing.with_database(server, scratch))
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT nspname, pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = ANY(%s)",
                    (list(SERVICES),),
                )
                assert dict(cursor.fetchall()) == {s: f"shop_{s}" for s in SERVICES}
        finally:
            connection.close()
    finally:
        admin = psycopg2.connect(server)
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        admin.close()
