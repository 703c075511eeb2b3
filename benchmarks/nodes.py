"""One job on 1 node x 2 processes vs 2 nodes x 1; per-mini-batch overhead by setup.

Usage: `python -m benchmarks.nodes [--quick]`; needs PostgreSQL (user postgres,
trust) and Redis on localhost, else it says so and skips.

Two real `qcluster` nodes per deployment (node-a, node-b) run invoked jobs of
scripts/spin_score.py, one file per mini-batch: (a) CPU-bound files as
instance_count x max_concurrency_per_instance 1 x 2 (the engine's in-memory
ledger) and 2 x 1 (the shared database ledger) on Redis + PostgreSQL; (b)
no-op files as 1 x 2 on ORM broker + SQLite and on Redis + PostgreSQL, and
2 x 1 on Redis + PostgreSQL, overhead = (job wall - a bare loop calling the
same run() on the same mini-batches) / mini-batches. Wall is the job row's
started_at to finished_at; gap is a scoring process's idle time between two
mini-batches (job report); CPU is the nodes' process trees and the machine's
PostgreSQL and Redis servers (other sessions' queries included); db counts
come from pg_stat_database. Database, Redis keys (DB 15) and folders are
removed after.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from .background import _busy, wait_for_quiet
from .brokers import (
    POSTGRES,
    REDIS_URL,
    SCALEOUT_VARS,
    _drop_redis_keys,
    _postgres_database,
)

REPO = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "scripts" / "spin_score.py"
NODES = ("node-a", "node-b")
ONE_NODE = {"instance_count": 1, "max_concurrency_per_instance": 2}
TWO_NODES = {"instance_count": 2, "max_concurrency_per_instance": 1}
JOB_TIMEOUT_S = 300
LAYOUT_NAMES = ("1 node x 2 (in-memory ledger)", "2 nodes x 1 (shared ledger)")
# (a) files and CPU ms per file, (b) no-op mini-batches.
SIZES = {"full": (400, 50, 1000), "quick": (100, 50, 200)}


@dataclass
class Figures:
    """One job as it ran: the row's times, the job report, CPU and database work."""

    deployment: str
    instances: int
    processes: int
    mini_batches: int
    items: int
    wall_s: float
    scored_on: Counter[str]
    first_start_s: dict[str, float]
    # On each scoring process, from one mini-batch's end to the next one's start.
    gaps_ms: list[float]
    nodes_cpu_s: float
    servers_cpu_s: float
    other_pct: float
    db_xacts: int | None
    db_tuples: int | None

    @property
    def layout(self) -> str:
        return f"{self.instances} x {self.processes}"

    @property
    def ledger(self) -> str:
        return "shared" if self.instances > 1 else "in-memory"

    @property
    def startup_s(self) -> float:
        """From the job's start to its first mini-batch's."""
        return min(self.first_start_s.values())

    @property
    def items_per_s(self) -> float:
        return self.items / self.wall_s

    def per_batch(self, value: float | None, scale: float = 1.0) -> str:
        return "n/a" if value is None else f"{scale * value / self.mini_batches:.1f}"


# Node side: run in a subprocess with Django set up on the deployment's settings.


def seed(server: Path, spin_ms: int) -> None:
    """Workspace `bench`, its owner, endpoints `spin` and `noop` on their data."""
    from django.contrib.auth.models import User

    from studio.models import Membership, Role, Workspace
    from studio.services.assets import (
        create_environment,
        register_data,
        register_model,
    )
    from studio.services.endpoints import create_deployment, create_endpoint

    workspace = Workspace.objects.create(name="bench")
    owner = User.objects.create_user("owner")
    Membership.objects.create(workspace=workspace, user=owner, role=Role.OWNER)
    register_model(workspace, owner, name="weights", server_path=str(server / "model"))
    # No requirements: scoring processes run on the nodes' own interpreter.
    create_environment(workspace, owner, name="worker-python")
    for name, spin in (("spin", spin_ms), ("noop", 0)):
        register_data(
            workspace,
            owner,
            name=name,
            data_type="uri_folder",
            server_path=str(server / name),
        )
        endpoint = create_endpoint(workspace, owner, name=name)
        create_deployment(
            endpoint,
            owner,
            name="blue",
            model="weights:1",
            environment="worker-python:1",
            code_path=str(server / "code"),
            scoring_script=SCRIPT.name,
            settings={
                "mini_batch_size": 1,
                "resource_monitor_interval": 0,
                "environment_variables": {"SPIN_MS": str(spin)},
            },
        )


def wait_for_nodes(count: int) -> None:
    from studio.models import Node

    deadline = time.monotonic() + 60
    while Node.objects.alive().count() < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"fewer than {count} nodes beat within 60 s")
        time.sleep(0.2)


def run_job(endpoint_name: str, job_name: str, overrides: str) -> None:
    """Invoke endpoint `endpoint_name` on its data, wait for the end, print JSON."""
    from django.contrib.auth.models import User

    from studio.models import BatchEndpoint
    from studio.services.invoke import invoke

    job = invoke(
        BatchEndpoint.objects.get(name=endpoint_name),
        User.objects.get(username="owner"),
        data_asset=f"{endpoint_name}:1",
        job_name=job_name,
        overrides=json.loads(overrides),
    )
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not job.is_terminal and time.monotonic() < deadline:
        time.sleep(0.5)
        job.refresh_from_db()
    stamps = {
        key: getattr(job, f"{key}_at") and getattr(job, f"{key}_at").timestamp()
        for key in ("started", "finished")
    }
    print(
        json.dumps(
            {
                **stamps,
                "status": job.status,
                "error": job.error,
                "items": job.items_succeeded,
                "mini_batches": job.mini_batches_total,
                "job_dir": job.job_dir,
            }
        )
    )


NODE_SIDE: dict[str, Callable[..., None]] = {
    "seed": lambda server, spin: seed(Path(server), int(spin)),
    "nodes": lambda count: wait_for_nodes(int(count)),
    "job": run_job,
}


# This side: deployments, nodes, measurements.


def unavailable() -> str:
    """Why PostgreSQL or Redis on localhost cannot be used, or ""."""
    import psycopg
    import redis

    redis_at = urlsplit(REDIS_URL)
    for what, host, port in (
        ("PostgreSQL", POSTGRES["host"], POSTGRES["port"]),
        ("Redis", redis_at.hostname, redis_at.port),
    ):
        try:
            socket.create_connection((host, port), timeout=1).close()
        except OSError as exc:
            return f"{what} not reachable on {host}:{port} ({exc})"
    try:
        psycopg.connect(**POSTGRES, dbname="postgres", connect_timeout=2).close()
        with redis.Redis.from_url(REDIS_URL, socket_timeout=2) as client:
            client.ping()
    except (psycopg.Error, redis.RedisError) as exc:
        return f"PostgreSQL (user postgres, no password) or Redis refused: {exc}"
    return ""


class Deployment:
    """Two nodes sharing one database, broker and datastore; runs jobs on them."""

    def __init__(self, name: str, env: dict[str, str], database: str | None) -> None:
        self.name = name
        self.env = env
        self.database = database  # PostgreSQL database name, for its statistics
        self.pids: list[int] = []

    def node_side(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.nodes", "--node-side", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"{self.name}: node side {args[0]} failed:\n{done.stderr}")
        return done.stdout

    def run(self, endpoint: str, job: str, overrides: dict[str, int]) -> Figures:
        wait_for_quiet(limit_s=5)
        cpu, servers = _tree_cpu(self.pids), _tree_cpu(_server_pids())
        machine, own = _busy(psutil.cpu_times()), _own_cpu()
        stats, started = self._db_stats(), time.perf_counter()
        seen = json.loads(
            self.node_side("job", endpoint, job, json.dumps(overrides)).splitlines()[-1]
        )
        window = time.perf_counter() - started
        nodes_cpu = _delta(cpu, _tree_cpu(self.pids))
        servers_cpu = _delta(servers, _tree_cpu(_server_pids()))
        other = _busy(psutil.cpu_times()) - machine - nodes_cpu - servers_cpu
        other -= _own_cpu() - own
        time.sleep(1.5)  # PostgreSQL publishes a backend's counts within 1 s
        after = self._db_stats()
        if seen["status"] != "completed":
            raise SystemExit(
                f"{self.name}: job {job} {seen['status']}: {seen['error']}"
            )
        scored_on, first, gaps = _job_report(Path(seen["job_dir"]))
        figures = Figures(
            deployment=self.name,
            instances=overrides["instance_count"],
            processes=overrides["max_concurrency_per_instance"],
            mini_batches=seen["mini_batches"],
            items=seen["items"],
            wall_s=seen["finished"] - seen["started"],
            scored_on=scored_on,
            first_start_s={n: t - seen["started"] for n, t in first.items()},
            gaps_ms=gaps,
            nodes_cpu_s=nodes_cpu,
            servers_cpu_s=servers_cpu,
            other_pct=100 * max(0.0, other) / (window * (os.cpu_count() or 1)),
            db_xacts=None if stats is None else after[0] - stats[0],
            db_tuples=None if stats is None else after[1] - stats[1],
        )
        print(_run_line(job, figures), flush=True)
        if len(scored_on) < figures.instances:
            print(f"  WARNING: {job} scored on fewer nodes than instance_count")
        return figures

    def _db_stats(self) -> tuple[int, int] | None:
        """Transactions and tuples returned so far in this deployment's database."""
        if self.database is None:
            return None
        import psycopg

        query = (
            "SELECT xact_commit + xact_rollback, tup_returned"
            " FROM pg_stat_database WHERE datname = %s"
        )
        with psycopg.connect(**POSTGRES, dbname="postgres", autocommit=True) as conn:
            return conn.execute(query, [self.database]).fetchone()


@contextmanager
def deployment(
    name: str, folder: Path, server: Path, spin_ms: int, extra: dict[str, str]
) -> Iterator[Deployment]:
    """Migrate, seed, start both nodes and wait for their heartbeats; stop after."""
    folder.mkdir()
    inherited = {k: v for k, v in os.environ.items() if k not in SCALEOUT_VARS}
    env = {
        **inherited,
        "DJANGO_SETTINGS_MODULE": "studio.settings",
        "SECRET_KEY": "benchmark-key-shared-by-both-nodes",
        "STUDIO_DATA_DIR": str(folder),
        "STUDIO_DATASTORE": str(folder / "datastore"),
        "STUDIO_ENV_CACHE": str(folder / "environments"),
        "STUDIO_ALLOWED_ROOTS": str(server),
        "STUDIO_SYNC_TASKS": "false",
        "STUDIO_WORKERS": "2",
        "STUDIO_NODE_HEARTBEAT_S": "1",
        **extra,
    }
    database = extra.get("DATABASE_URL", "").rpartition("/")[2] or None
    shared = Deployment(name, env, database)
    migrate = [sys.executable, "manage.py", "migrate", "--noinput"]
    subprocess.run(migrate, cwd=REPO, env=env, check=True, capture_output=True)
    shared.node_side("seed", str(server), str(spin_ms))
    with ExitStack() as stack:
        for node in NODES:
            node_env = {**env, "STUDIO_NODE_NAME": node}
            cluster = stack.enter_context(_qcluster(node_env, folder / f"{node}.log"))
            shared.pids.append(cluster.pid)
        shared.node_side("nodes", str(len(NODES)))
        yield shared


@contextmanager
def _qcluster(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A node, stopped by SIGTERM to its main process only (DESIGN section 8)."""
    with log.open("wb") as sink:
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield cluster
    finally:
        cluster.send_signal(signal.SIGTERM)
        try:
            cluster.wait(timeout=60)
        except subprocess.TimeoutExpired:
            for process in psutil.Process(cluster.pid).children(recursive=True):
                process.kill()
            cluster.kill()
            cluster.wait()


def bare_loop(folder: Path) -> float:
    """Seconds to call the script's run() on each one-file mini-batch, in order."""
    spec = importlib.util.spec_from_file_location("spin_score", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    os.environ["SPIN_MS"] = "0"
    script.init()
    started = time.perf_counter()
    for path in sorted(folder.iterdir()):
        script.run([str(path)])
    return time.perf_counter() - started


def _write_inputs(server: Path, spin_files: int, noop_files: int) -> None:
    (server / "code").mkdir(parents=True)
    (server / "code" / SCRIPT.name).write_bytes(SCRIPT.read_bytes())
    (server / "model").mkdir()
    (server / "model" / "weights.txt").write_text("1\n")
    for name, count in (("spin", spin_files), ("noop", noop_files)):
        (server / name).mkdir()
        for number in range(count):
            (server / name / f"item_{number:05d}.txt").write_text(f"{number}\n")


def _job_report(
    job_dir: Path,
) -> tuple[Counter[str], dict[str, float], list[float]]:
    """Mini-batches per node, each node's first start (epoch s), gaps in ms."""
    report = job_dir / "logs/sys/job_report/processed_mini-batches.csv"
    with report.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for row in rows:
        start, end = (
            datetime.fromisoformat(row[key]).timestamp()
            for key in ("start_time", "end_time")
        )
        runs.setdefault((row["node"], row["process"]), []).append((start, end))
    first: dict[str, float] = {}
    gaps = []
    for (node, _), spans in sorted(runs.items()):
        spans.sort()
        first[node] = min(first.get(node, spans[0][0]), spans[0][0])
        gaps += [1000 * (b[0] - a[1]) for a, b in pairwise(spans)]
    return Counter(row["node"] for row in rows), first, gaps


def _tree_cpu(pids: list[int]) -> dict[int, float]:
    """CPU seconds of each process under `pids`, with the children they reaped."""
    seen = {}
    for pid in pids:
        try:
            root = psutil.Process(pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for process in processes:
            try:
                t = process.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            seen[process.pid] = t.user + t.system + t.children_user + t.children_system
    return seen


def _delta(before: dict[int, float], after: dict[int, float]) -> float:
    # A process gone by `after` was reaped by one still there, whose children
    # times now hold its whole life: subtracting its `before` share is right.
    return sum(after.values()) - sum(before.values())


def _server_pids() -> list[int]:
    """PostgreSQL's postmaster (it reaps the backends) and redis-server."""
    found = {p.pid: p.info for p in psutil.process_iter(["name", "ppid"])}
    return [
        pid
        for pid, info in found.items()
        if info["name"] == "redis-server"
        or (
            info["name"] == "postgres"
            and found.get(info["ppid"], {}).get("name") != "postgres"
        )
    ]


def _own_cpu() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def _run_line(job: str, f: Figures) -> str:
    scored = ", ".join(f"{n} {c}" for n, c in sorted(f.scored_on.items()))
    first = ", ".join(f"{n} +{s:.2f} s" for n, s in f.first_start_s.items())
    return (
        f"  {f.deployment:<16} {job:<6} wall {f.wall_s:6.2f} s, {f.items_per_s:6.1f}"
        f" items/s | scored on {scored} | first mini-batch {first}"
        f" | CPU nodes {f.nodes_cpu_s:.1f} s, servers {f.servers_cpu_s:.1f} s,"
        f" other {f.other_pct:.0f}%"
    )


def throughput_table(a: list[Figures], spin_files: int, spin_ms: int) -> list[str]:
    ideal = spin_files * spin_ms / 1000 / 2
    head = (
        f"{'layout (instances x processes)':<30} {'wall s':>6} {'items/s':>7}"
        f" {'gap ms p50/mean':>15} {'nodes CPU s':>11} {'servers CPU s':>13}"
        f" {'other %':>7}"
    )
    lines = [
        f"(a) one job, {spin_files} one-file mini-batches of {spin_ms} ms CPU,"
        f" Redis + PostgreSQL (pure scoring on 2 CPUs: {ideal:.1f} s)",
        head,
        "-" * len(head),
    ]
    for f, name in zip(a, LAYOUT_NAMES, strict=True):
        lines.append(
            f"{name:<30} {f.wall_s:6.2f} {f.items_per_s:7.1f} {_gaps(f):>15}"
            f" {f.nodes_cpu_s:11.1f} {f.servers_cpu_s:13.1f} {f.other_pct:7.0f}"
        )
    one, two = a
    lines.append(
        f"2 nodes x 1 vs 1 node x 2: wall {two.wall_s / one.wall_s:.2f}x,"
        f" throughput {two.items_per_s / one.items_per_s:.2f}x"
    )
    return lines


def overhead_table(b: list[Figures], bare_s: float) -> list[str]:
    head = (
        f"{'deployment':<16} {'layout':<6} {'ledger':<9} {'1st mb s':>8}"
        f" {'wall s':>6} {'ovh ms/mb':>9} {'gap ms p50/mean':>15}"
        f" {'nodes CPU':>9} {'db xacts':>8} {'db tuples':>9} {'other %':>7}"
    )
    lines = [
        f"(b) {b[0].mini_batches} one-file mini-batches, no-op run(); bare loop"
        f" {bare_s:.3f} s; ovh = (wall - bare loop) / mini-batches; nodes CPU (ms),"
        " db xacts and tuples are per mini-batch",
        head,
        "-" * len(head),
    ]

    def overhead(f: Figures) -> float:
        return (f.wall_s - bare_s) / f.mini_batches * 1000

    for f in b:
        lines.append(
            f"{f.deployment:<16} {f.layout:<6} {f.ledger:<9} {f.startup_s:8.2f}"
            f" {f.wall_s:6.2f} {overhead(f):9.2f} {_gaps(f):>15}"
            f" {f.per_batch(f.nodes_cpu_s, 1000):>9} {f.per_batch(f.db_xacts):>8}"
            f" {f.per_batch(f.db_tuples):>9} {f.other_pct:7.0f}"
        )
    sqlite, memory, shared = b
    lines.append(
        f"per-mini-batch overhead, redis + postgres vs orm + sqlite (1 x 2):"
        f" {overhead(memory) / overhead(sqlite):.2f}x"
    )
    lines.append(
        f"per-mini-batch overhead, shared ledger (2 x 1) vs in-memory (1 x 2),"
        f" redis + postgres: {overhead(shared) / overhead(memory):.2f}x"
    )
    return lines


def _gaps(f: Figures) -> str:
    if not f.gaps_ms:
        return "n/a"
    return f"{statistics.median(f.gaps_ms):.1f}/{statistics.mean(f.gaps_ms):.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.nodes", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="smaller jobs")
    parser.add_argument("--node-side", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.node_side:
        import django

        django.setup()
        NODE_SIDE[args.node_side[0]](*args.node_side[1:])
        return 0
    reason = unavailable()
    if reason:
        print(f"benchmarks.nodes skipped: {reason}; `.ci/run` starts both")
        return 0
    spin_files, spin_ms, noop_files = SIZES["quick" if args.quick else "full"]
    print(
        f"Batch Studio nodes benchmark: {os.cpu_count()} CPUs; two qcluster nodes"
        " per deployment (2 workers each, heartbeat 1 s) on this machine",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-nodes-") as tmp:
        root = Path(tmp)
        _write_inputs(root / "server", spin_files, noop_files)
        bare_s = bare_loop(root / "server" / "noop")
        a, b = [], []
        cluster = f"bench-nodes-{uuid.uuid4().hex[:12]}"
        try:
            with (
                _postgres_database() as url,
                deployment(
                    "redis + postgres",
                    root / "postgres",
                    root / "server",
                    spin_ms,
                    {
                        "DATABASE_URL": url,
                        "STUDIO_REDIS_URL": REDIS_URL,
                        "STUDIO_CLUSTER_NAME": cluster,
                    },
                ) as scaled,
            ):
                a.append(scaled.run("spin", "a-1x2", ONE_NODE))
                a.append(scaled.run("spin", "a-2x1", TWO_NODES))
                b.append(scaled.run("noop", "b-1x2", ONE_NODE))
                b.append(scaled.run("noop", "b-2x1", TWO_NODES))
        finally:
            _drop_redis_keys(cluster)
        sqlite_env = {"STUDIO_CLUSTER_NAME": cluster}
        with deployment(
            "orm + sqlite", root / "sqlite", root / "server", spin_ms, sqlite_env
        ) as local:
            b.insert(0, local.run("noop", "b-1x2", ONE_NODE))
    print()
    for line in throughput_table(a, spin_files, spin_ms):
        print(line)
    print()
    for line in overhead_table(b, bare_s):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
