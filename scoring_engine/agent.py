"""Process agent: owns one scoring host; claims, times out, commits mini-batches.

This is the only module that starts processes. The agent never runs user
code itself: the scoring host is a child process under the deployment's
Python, and the agent enforces every limit on it from outside (timeouts by
killing it, restarts after a crash).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from . import protocol
from .config import Settings
from .errors import ScriptError
from .jobfolder import JobFolder, LogFile, timestamp
from .partition import MiniBatch
from .state import BatchState, Claim, MiniBatchLedger

HOST_SCRIPT = Path(__file__).with_name("host.py")
# How long a host gets to exit after `shutdown` before it is killed.
_SHUTDOWN_GRACE_S = 5.0


@dataclass(frozen=True)
class ScoringCommand:
    """What every scoring host of a job runs: interpreter, script and its argv."""

    python: str
    script: Path
    code_dir: Path | None
    model_dir: Path | None
    settings: Settings
    script_args: tuple[str, ...]


@dataclass(frozen=True)
class AttemptRecord:
    """One finished mini-batch attempt, as the job report and node log show it."""

    index: int
    attempt: int
    outcome: BatchState | None
    process: str
    pid: int
    total_items: int
    succeeded_items: int
    failed_items: int
    started: float
    duration_s: float
    run_s: float
    write_s: float
    cpu_s: float
    error: str = ""


class ScoringHost:
    """One running host process and the pipes to talk to it."""

    def __init__(
        self, command: ScoringCommand, stdout: IO[bytes], stderr: IO[bytes]
    ) -> None:
        to_host_read, self._to_host = os.pipe()
        self._from_host, from_host_write = os.pipe()
        settings = command.settings
        argv = [
            command.python,
            str(HOST_SCRIPT),
            "--in-fd", str(to_host_read),
            "--out-fd", str(from_host_write),
            "--parent-pid", str(os.getpid()),
            "--script", str(command.script),
            "--code-dir", str(command.code_dir or ""),
            "--output-action", settings.output_action,
            "--logging-level", settings.logging_level,
            "--", *command.script_args,
        ]  # fmt: skip
        env = {**os.environ, **settings.environment_variables, "PYTHONUNBUFFERED": "1"}
        if command.model_dir is not None:
            env["AZUREML_MODEL_DIR"] = env["MODEL_DIR"] = str(command.model_dir)
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                pass_fds=(to_host_read, from_host_write),
                cwd=command.code_dir or None,
                env=env,
                start_new_session=True,
            )
        finally:
            os.close(to_host_read)
            os.close(from_host_write)
        self.channel = protocol.Channel(self._from_host)
        self._closed = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, kind: str, **fields: object) -> None:
        protocol.send(self._to_host, kind, **fields)

    def exit_description(self) -> str:
        """Why the host is gone, in words: exit code or signal name."""
        code = self.process.wait()
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"the scoring process was killed by {name}"
        return f"the scoring process exited with code {code}"

    def terminate(self) -> None:
        """Kill the host's process group; safe from any thread.

        The owning agent notices the closed pipe and cleans up itself.
        """
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.terminate()
        self.process.wait()
        self.close()

    def stop(self) -> None:
        """Ask for shutdown() and exit; kill when it does not come in time."""
        if self.process.poll() is None:
            try:
                self.send(protocol.SHUTDOWN)
                self.process.wait(_SHUTDOWN_GRACE_S)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def close(self) -> None:
        # Only the owning agent's thread closes, and only once: a second close
        # could hit a descriptor number the process has since reused.
        if self._closed:
            return
        self._closed = True
        os.close(self._to_host)
        os.close(self._from_host)


class Agent:
    """Runs mini-batches of one job through one scoring host, one at a time."""

    def __init__(
        self,
        *,
        node: str,
        process: str,
        command: ScoringCommand,
        batches: Sequence[MiniBatch],
        ledger: MiniBatchLedger,
        folder: JobFolder,
        report: Callable[[AttemptRecord], None],
        note_error: Callable[[str, str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        self.process = process
        self.command = command
        self.batches = batches
        self.ledger = ledger
        self.folder = folder
        self.report = report
        self.note_error = note_error
        self.clock = clock
        self.host: ScoringHost | None = None
        self.init_count = 0
        self._node_log: LogFile | None = None
        self._error_log: LogFile | None = None

    @property
    def pid(self) -> int | None:
        return self.host.pid if self.host and self.host.process.poll() is None else None

    def start_host(self) -> ScoringHost:
        """Start a host and wait for its init(); ScriptError when init fails."""
        folder = self.folder
        with (
            _open_append(folder.user_stdout(self.node, self.process)) as stdout,
            _open_append(folder.user_stderr(self.node, self.process)) as stderr,
        ):
            host = ScoringHost(self.command, stdout, stderr)
        self.init_count += 1
        # Published before init() so a canceled job can kill a host stuck in it.
        self.host = host
        message = host.channel.receive()
        if message is None or message["kind"] == protocol.INIT_FAILED:
            self.host = None
        if message is None:
            reason = host.exit_description()
            host.close()
            stderr_path = folder.user_stderr(self.node, self.process)
            error = ScriptError(
                f"the scoring process stopped during init(): {reason}",
                hint=f"see {folder.relative(stderr_path)}",
            )
        elif message["kind"] == protocol.INIT_FAILED:
            host.kill()
            self.error_log.write(f"init() failed:\n{message['traceback']}")
            error = ScriptError(
                f"{self.command.script.name}: {message['error']}",
                hint=f"see {folder.relative(self.error_log.path)}",
            )
        else:
            return host
        self.note_error(
            f"init() on {self.process}: {error.message}",
            error.hint.removeprefix("see "),
        )
        raise error

    @property
    def error_log(self) -> LogFile:
        if self._error_log is None:
            self._error_log = LogFile(
                self.folder.user_error_log(self.node, self.process)
            )
        return self._error_log

    def step(self) -> bool:
        """Claim and run one mini-batch; False when nothing was pending.

        Raises ScriptError when a (re)started host cannot init().
        """
        claim = self.ledger.claim(self.process, self.clock())
        if claim is None:
            return False
        host = self.host if self.host and self.host.process.poll() is None else None
        if host is None:
            try:
                host = self.start_host()
            except ScriptError:
                self.ledger.fail(claim)
                raise
        if self.ledger.closed:
            # The job ended during init(); the orchestrator stops the ledger
            # before it kills the hosts it knows, so a host published after
            # that kill is caught here instead of running a whole timeout.
            return False
        self.report(self._run(host, claim))
        return True

    def loop(self, stop: threading.Event) -> None:
        """Run steps until the job has nothing left for this agent."""
        while not stop.is_set():
            if self.step() or self.ledger.wait_for_work(timeout=1.0):
                continue
            if self.ledger.closed:
                # Keep the host up until the orchestrator's last resource
                # sample has seen it.
                stop.wait()

    def shutdown(self) -> None:
        if self.host is not None:
            self.host.stop()
            self.host = None
        for log in (self._node_log, self._error_log):
            if log is not None:
                log.close()

    def _run(self, host: ScoringHost, claim: Claim) -> AttemptRecord:
        batch = self.batches[claim.index]
        part = (
            self.folder.parts_dir
            / f"{claim.index:08d}.{claim.attempt}.{self.process}.tmp"
        )
        payload: dict[str, object] = {"index": claim.index, "attempt": claim.attempt}
        if batch.is_tabular:
            payload["segments"] = [s.as_message() for s in batch.segments]
        else:
            payload["files"] = list(batch.files)
        payload["part"] = str(part)
        started_wall, started = time.time(), time.perf_counter()
        timeout = self.command.settings.timeout
        try:
            host.send(protocol.RUN, **payload)
            message = host.channel.receive(timeout=timeout)
        except TimeoutError:
            host.kill()
            message = {
                "kind": protocol.FAILED,
                "error": f"run() did not return within {timeout:g} s"
                " (retry_settings.timeout); the scoring process was stopped",
            }
        except BrokenPipeError:
            message = None
        if message is None:
            message = {
                "kind": protocol.FAILED,
                "error": f"{host.exit_description()} while running this mini-batch",
            }
            host.close()
        duration = time.perf_counter() - started
        if message["kind"] == protocol.DONE:
            returned = int(message["returned"])
            if self.command.settings.output_action == "append_row":
                # The rename is the commit point: a part is published whole or not.
                os.replace(part, self.folder.part_file(claim.index))
            succeeded = min(returned, batch.item_count)
            failed = batch.item_count - succeeded
            outcome = (
                BatchState.SUCCEEDED
                if self.ledger.succeed(claim, succeeded, failed)
                else None
            )
            error = ""
        else:
            part.unlink(missing_ok=True)
            succeeded, failed = 0, batch.item_count
            error = message["error"]
            self._log_error(claim, batch, error, message.get("traceback", ""))
            # Noted before the ledger hears of it, so a threshold breach the
            # orchestrator sees always has its cause at hand.
            self.note_error(
                f"mini-batch {claim.index} attempt {claim.attempt} on"
                f" {self.process}: {error}",
                self.folder.relative(self.error_log.path),
            )
            outcome = self.ledger.fail(claim)
        record = AttemptRecord(
            index=claim.index,
            attempt=claim.attempt,
            outcome=outcome,
            process=self.process,
            pid=host.pid,
            total_items=batch.item_count,
            succeeded_items=succeeded,
            failed_items=failed,
            started=started_wall,
            duration_s=duration,
            run_s=float(message.get("run_s", duration)),
            write_s=float(message.get("write_s", 0.0)),
            cpu_s=float(message.get("cpu_s", 0.0)),
            error=error,
        )
        self._log_attempt(record)
        return record

    def _log_error(
        self, claim: Claim, batch: MiniBatch, error: str, trace: str
    ) -> None:
        where = f"mini-batch {claim.index} attempt {claim.attempt}"
        self.error_log.write(
            f"{where} ({batch.describe()}): {error}\n{trace or error}".rstrip()
        )

    def _log_attempt(self, record: AttemptRecord) -> None:
        if self._node_log is None:
            self._node_log = LogFile(self.folder.node_log(self.node, self.process))
        status = record.outcome or "not counted"
        self._node_log.write(
            f"mini-batch {record.index} attempt {record.attempt} {status}:"
            f" node={self.node} pid={record.pid} total_items={record.total_items}"
            f" succeeded_items={record.succeeded_items}"
            f" failed_items={record.failed_items}"
            f" start_time={timestamp(_as_datetime(record.started))}"
            f" duration_s={record.duration_s:.4f} process_cpu_s={record.cpu_s:.4f}"
            f" run_s={record.run_s:.4f} write_s={record.write_s:.4f}"
        )


def processed_row(node: str, record: AttemptRecord) -> dict[str, object]:
    """One row of processed_mini-batches.csv."""
    return {
        "mini_batch": record.index,
        "attempt": record.attempt,
        "status": record.outcome or "not counted",
        "node": node,
        "process": record.process,
        "pid": record.pid,
        "total_items": record.total_items,
        "succeeded_items": record.succeeded_items,
        "failed_items": record.failed_items,
        "start_time": timestamp(_as_datetime(record.started)),
        "end_time": timestamp(_as_datetime(record.started + record.duration_s)),
        "duration_s": f"{record.duration_s:.4f}",
        "run_s": f"{record.run_s:.4f}",
        "write_s": f"{record.write_s:.4f}",
        "process_cpu_s": f"{record.cpu_s:.4f}",
        "error": record.error,
    }


def start_agent_threads(
    agents: Sequence[Agent],
    stop: threading.Event,
    on_fatal: Callable[[Agent, Exception], None],
) -> list[threading.Thread]:
    """Run each agent in a thread of this process (hosts start in parallel).

    This is the one place that decides how agents run.
    """

    def body(agent: Agent) -> None:
        try:
            agent.loop(stop)
        except Exception as exc:  # noqa: BLE001 - reported to the orchestrator
            on_fatal(agent, exc)
        finally:
            # Hosts die with the thread that started them (PR_SET_PDEATHSIG),
            # so the same thread must ask for their shutdown().
            agent.shutdown()
            agent.ledger.thread_done()

    threads = [
        threading.Thread(target=body, args=(agent,), name=agent.process, daemon=True)
        for agent in agents
    ]
    for thread in threads:
        thread.start()
    return threads


def _open_append(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "ab")


def _as_datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
