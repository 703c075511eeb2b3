"""Scale-out fixtures: a throwaway PostgreSQL database and Redis queue per test.

The studio runs in subprocesses configured by environment variables, as on
real nodes; this process only creates and drops what they share. The
services are the machine's own on localhost; where either is not reachable
the tests that need them skip, saying which and how to start it.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql

POSTGRES = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)
# Superuser with trust auth on loopback (the CI machine's PostgreSQL).
POSTGRES_ADMIN = "postgres"
# Away from DB 0, where a developer's own data would be; keys are removed after.
REDIS_DB = 15
ADMIN = {"host": POSTGRES[0], "port": POSTGRES[1], "user": POSTGRES_ADMIN}


def unreachable(address: tuple[str, int], what: str) -> str:
    """Why `what` cannot be used at `address`, or "" when a connection opens."""
    host, port = address
    try:
        socket.create_connection(address, timeout=1).close()
    except OSError as exc:
        return f"{what} not reachable on {host}:{port} ({exc}); `.ci/run` starts it"
    return ""


def refused() -> str:
    """Why PostgreSQL or Redis refuses these tests though listening, or ""."""
    try:
        psycopg.connect(**ADMIN, dbname="postgres", connect_timeout=2).close()
    except psycopg.Error as exc:
        return (
            f"PostgreSQL refused user {POSTGRES_ADMIN} (no password) on"
            f" {POSTGRES[0]}:{POSTGRES[1]}: {exc}"
        )
    try:
        with redis.Redis(*REDIS, db=REDIS_DB, socket_timeout=2) as client:
            client.ping()
    except redis.RedisError as exc:
        return f"Redis did not answer PING: {exc}"
    return ""


@pytest.fixture(scope="session")
def services() -> None:
    """Skip, with the reason, unless PostgreSQL and Redis answer on localhost."""
    reasons = [unreachable(POSTGRES, "PostgreSQL"), unreachable(REDIS, "Redis")]
    reason = "; ".join(r for r in reasons if r) or refused()
    if reason:
        pytest.skip(reason)


@dataclass
class Deployment:
    """What every node of one throwaway scale-out deployment shares."""

    database_url: str
    redis_url: str
    cluster_name: str
    datastore: Path
    env_cache: Path
    server: Path

    def environ(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url,
            "STUDIO_REDIS_URL": self.redis_url,
            "STUDIO_CLUSTER_NAME": self.cluster_name,
            "SECRET_KEY": "scale-out-test-key-shared-by-every-node",
            "STUDIO_DATASTORE": str(self.datastore),
            "STUDIO_ENV_CACHE": str(self.env_cache),
            "STUDIO_ALLOWED_ROOTS": str(self.server),
            "STUDIO_SYNC_TASKS": "false",
        }


@pytest.fixture
def throwaway_database(services: None) -> Iterator[str]:
    """A new, empty PostgreSQL database for this test; dropped after it."""
    name = f"studio_scaleout_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(**ADMIN, dbname="postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgres://{POSTGRES_ADMIN}@{POSTGRES[0]}:{POSTGRES[1]}/{name}"
    finally:
        with psycopg.connect(**ADMIN, dbname="postgres", autocommit=True) as conn:
            # FORCE: a node stopped uncleanly may still hold a connection.
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)
                )
            )


@pytest.fixture
def throwaway_cluster_name(services: None) -> Iterator[str]:
    """A cluster name no other run uses, so its Redis queue is this test's own."""
    name = f"scaleout-{uuid.uuid4().hex[:12]}"
    yield name
    with redis.Redis(*REDIS, db=REDIS_DB) as client:
        keys = list(client.scan_iter(match=f"django_q:{name}:*"))
        if keys:
            client.delete(*keys)


@pytest.fixture
def deployment(
    throwaway_database: str,
    throwaway_cluster_name: str,
    tmp_path: Path,
    settings,
    monkeypatch: pytest.MonkeyPatch,
) -> Deployment:
    """The shared configuration, in os.environ and in this process's settings.

    Both, because tests.studio.test_cluster.qcluster() starts a node from
    os.environ plus the datastore, node and cluster name in `settings`.
    """
    shared = Deployment(
        database_url=throwaway_database,
        redis_url=f"redis://{REDIS[0]}:{REDIS[1]}/{REDIS_DB}",
        cluster_name=throwaway_cluster_name,
        datastore=tmp_path / "datastore",
        env_cache=tmp_path / "environments",
        server=tmp_path / "server",
    )
    shared.server.mkdir()
    for name, value in shared.environ().items():
        monkeypatch.setenv(name, value)
    settings.STUDIO_DATASTORE = shared.datastore
    settings.STUDIO_ENV_CACHE = shared.env_cache
    settings.STUDIO_ALLOWED_ROOTS = [shared.server]
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "name": shared.cluster_name}
    return shared
