"""Master role: one job's agents, retries, thresholds, ordered output, result."""

from __future__ import annotations

import shutil
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .agent import (
    Agent,
    AttemptRecord,
    ScoringCommand,
    processed_row,
    start_agent_threads,
)
from .checkpoint import Checkpoint
from .config import Settings
from .deployment import DeploymentSpec
from .environments import prepare_python
from .errors import EngineError, EnvironmentBuildError, ScriptError
from .jobfolder import (
    PROCESSED_COLUMNS,
    CsvLog,
    JobFolder,
    LogFile,
    timestamp,
    write_atomic,
)
from .monitor import ResourceMonitor
from .output import OrderedOutput
from .partition import MiniBatch, list_input_files, partition_files, partition_tabular
from .state import BatchState, Ledger, Progress

BUILTIN_SCORER = Path(__file__).with_name("mlflow_scorer.py")
INPUT_MODES = ("files", "tabular")
# Summaries are rewritten at most this often while a job runs.
_PROGRESS_EVERY_S = 1.0


@dataclass(frozen=True)
class JobSpec:
    """Everything one job needs; paths and node name arrive explicitly."""

    name: str
    deployment: DeploymentSpec
    input_path: Path
    job_dir: Path
    node: str
    env_cache: Path
    input_mode: str = "files"
    input_glob: str | None = None

    @property
    def settings(self) -> Settings:
        return self.deployment.settings


@dataclass(frozen=True)
class JobResult:
    """How a job ended, with counts and, on failure, the cause and the log to open."""

    name: str
    status: str
    mini_batches: int
    mini_batches_succeeded: int
    mini_batches_failed: int
    items_succeeded: int
    items_failed: int
    duration_s: float
    job_dir: Path
    output_path: Path | None
    error: str = ""
    error_log: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status == "completed"

    def summary_line(self) -> str:
        line = (
            f"{self.status}: {self.mini_batches_succeeded}/{self.mini_batches}"
            f" mini-batches succeeded ({self.mini_batches_failed} failed), items"
            f" {self.items_succeeded} succeeded, {self.items_failed} failed,"
            f" in {self.duration_s:.2f} s"
        )
        if self.error:
            line += f"; cause: {self.error}"
            if self.error_log:
                line += f" (see {self.error_log})"
        return line


def plan_job(spec: JobSpec) -> list[MiniBatch]:
    """Resolve and partition the input; raises before anything is created."""
    if spec.input_mode not in INPUT_MODES:
        raise EngineError(
            f"input type must be one of {', '.join(INPUT_MODES)},"
            f" not {spec.input_mode!r}"
        )
    files = list_input_files(spec.input_path, spec.input_glob)
    if spec.input_mode == "tabular":
        return partition_tabular(files, spec.settings.mini_batch_size)
    return partition_files(files, spec.settings.mini_batch_size)


def run_job(
    spec: JobSpec,
    *,
    should_cancel: Callable[[], bool] = lambda: False,
    on_progress: Callable[[Progress], None] = lambda progress: None,
    resume: bool = False,
) -> JobResult:
    """Run one job to its end and write its whole job folder.

    With `resume`, the job folder of an earlier, unfinished run is reused:
    mini-batches already committed to the output are kept, the rest run.
    `should_cancel` and `on_progress` are called about once a second from
    this thread. Raises SpecError, InputError or JobFolderError before
    anything starts; every later failure is written to the job folder and
    returned as a failed JobResult.
    """
    batches = plan_job(spec)
    size = str(spec.settings.mini_batch_size)
    if resume:
        folder = JobFolder.reopen(spec.job_dir)
        checkpoint = Checkpoint.load(folder.checkpoint)
        checkpoint.check_matches(len(batches), size)
        # Parts not yet in the output are re-run: their counts were not kept.
        for stale in folder.parts_dir.iterdir():
            stale.unlink()
    else:
        folder = JobFolder.create(spec.job_dir)
        checkpoint = Checkpoint(total=len(batches), mini_batch_size=size)
        checkpoint.save(folder.checkpoint)
    orchestrator = Orchestrator(spec, folder, batches, checkpoint)
    return orchestrator.run(should_cancel, on_progress)


class Orchestrator:
    """Drives one job: `tick()` does one round of bookkeeping and says if it did any."""

    def __init__(
        self,
        spec: JobSpec,
        folder: JobFolder,
        batches: Sequence[MiniBatch],
        checkpoint: Checkpoint,
    ) -> None:
        self.spec = spec
        self.folder = folder
        self.batches = batches
        settings = spec.settings
        self.ledger = Ledger([b.item_count for b in batches], settings.tries)
        self.driver = LogFile(folder.driver_log)
        self.master = LogFile(folder.master_log)
        self.processed = CsvLog(folder.processed_csv, PROCESSED_COLUMNS)
        self.user_errors: LogFile | None = None
        self.stop_event = threading.Event()
        self.agents: list[Agent] = []
        self.threads: list[threading.Thread] = []
        self.monitor: ResourceMonitor | None = None
        self.started = time.monotonic()
        self.first_error = ("", "")
        self.fatal: tuple[str, str] | None = None
        self._lock = threading.Lock()
        self.checkpoint = checkpoint
        self.ledger.restore(
            checkpoint.next_index,
            checkpoint.failed,
            (checkpoint.items_succeeded, checkpoint.items_failed),
        )
        self.output = OrderedOutput(
            self.output_path, folder, checkpoint, self.ledger, len(batches)
        )
        self._last_progress = 0.0

    @property
    def output_path(self) -> Path | None:
        if self.spec.settings.output_action != "append_row":
            return None
        return self.folder.output_file(self.spec.settings.output_file_name)

    def run(
        self,
        should_cancel: Callable[[], bool],
        on_progress: Callable[[Progress], None],
    ) -> JobResult:
        """Run to the end; whatever goes wrong ends up in the job folder."""
        try:
            return self._run(should_cancel, on_progress)
        except Exception as exc:
            # The engine's own failure boundary: the job folder must still
            # say what happened, and no scoring process may outlive it.
            self.master.write(f"engine error:\n{traceback.format_exc()}")
            cause = f"engine error: {type(exc).__name__}: {exc}"
            return self.finish("failed", cause, self.folder.relative(self.master.path))

    def _run(
        self,
        should_cancel: Callable[[], bool],
        on_progress: Callable[[Progress], None],
    ) -> JobResult:
        self._log_start()
        # The caller's heartbeat: building an environment can take a while.
        on_progress(self.ledger.progress())
        try:
            command = self._scoring_command()
        except EnvironmentBuildError as exc:
            log = self.folder.relative(self.folder.environment_log)
            return self.finish("failed", exc.message, log)
        on_progress(self.ledger.progress())
        self._start_agents(command)
        while True:
            now = time.monotonic()
            seen = self.ledger.generation
            status, error, log = self.tick(now)
            if status:
                return self.finish(status, error, log)
            if now - self._last_progress >= _PROGRESS_EVERY_S:
                self._last_progress = now
                progress = self.ledger.progress()
                self._write_progress(progress, "running")
                on_progress(progress)
                if should_cancel():
                    return self.finish("canceled", "canceled by request")
            self.ledger.wait_for_change(seen, _PROGRESS_EVERY_S)

    def tick(self, now: float) -> tuple[str, str, str]:
        """One round: expire leases, append ready output, check thresholds.

        Returns (final status, cause, log) once the job must end, else ("", "", "").
        """
        self.ledger.expire(now)
        self.output.assemble()
        progress = self.ledger.progress()
        if self.fatal:
            return ("failed", *self.fatal)
        breach = self._threshold_breach(progress)
        if breach:
            return "failed", breach, self.first_error[1]
        if progress.finished:
            return "completed", "", ""
        return "", "", ""

    def finish(self, status: str, error: str = "", error_log: str = "") -> JobResult:
        """Stop agents, complete the output, write the result files."""
        if self.monitor is not None:
            self.monitor.stop()
        self.stop_event.set()
        self.ledger.stop()
        if status != "completed":
            for agent in self.agents:
                if agent.host is not None:
                    agent.host.terminate()
        for thread in self.threads:
            thread.join(timeout=30)
        self.output.assemble(final=True)
        self.output.close()
        if status == "completed":
            shutil.rmtree(self.folder.parts_dir.parent, ignore_errors=True)
        progress = self.ledger.progress()
        result = JobResult(
            name=self.spec.name,
            status=status,
            mini_batches=progress.total,
            mini_batches_succeeded=progress.succeeded,
            mini_batches_failed=progress.failed,
            items_succeeded=progress.items_succeeded,
            items_failed=progress.items_failed,
            duration_s=time.monotonic() - self.started,
            job_dir=self.folder.root,
            output_path=self.output_path,
            error=error,
            error_log=error_log,
        )
        self._write_result(result, progress)
        return result

    def _scoring_command(self) -> ScoringCommand:
        deployment = self.spec.deployment
        requirements = (
            deployment.environment.python_requirements if deployment.environment else ()
        )
        python = prepare_python(
            requirements, self.spec.env_cache, self.folder.environment_log
        )
        self.driver.write(f"Scoring processes run {python}")
        if deployment.uses_builtin_scorer:
            script, code_dir = BUILTIN_SCORER, None
        else:
            code_dir = deployment.code_dir
            script = code_dir / deployment.scoring_script  # type: ignore[operator]
        return ScoringCommand(
            python=python,
            script=script,
            code_dir=code_dir,
            model_dir=deployment.model.path if deployment.model else None,
            settings=self.spec.settings,
            script_args=script_arguments(self.spec.settings),
        )

    def _start_agents(self, command: ScoringCommand) -> None:
        settings = self.spec.settings
        count = settings.instance_count * settings.max_concurrency_per_instance
        self.agents = [
            Agent(
                node=self.spec.node,
                process=f"process{number:03d}",
                command=command,
                batches=self.batches,
                ledger=self.ledger,
                folder=self.folder,
                report=self._record,
                note_error=self._note_error,
            )
            for number in range(min(count, len(self.batches)) or 1)
        ]
        self.monitor = ResourceMonitor(
            self.folder.perf_dir(self.spec.node),
            settings.resource_monitor_interval,
            watched_pids=lambda: {a.pid: a.process for a in self.agents if a.pid},
            disk_path=self.folder.root,
        )
        self.monitor.start()
        self.master.write(
            f"Starting {len(self.agents)} scoring processes on node {self.spec.node}"
        )
        self.threads = start_agent_threads(
            self.agents, self.stop_event, self._agent_failed
        )

    def _record(self, record: AttemptRecord) -> None:
        """Called from agent threads after every attempt."""
        self.processed.append(processed_row(self.spec.node, record))
        what = f"mini-batch {record.index} attempt {record.attempt} on {record.process}"
        if record.error:
            retry = {
                BatchState.PENDING: "will retry",
                BatchState.FAILED: "no tries left",
                None: "cut short by the job's end, not counted",
            }[record.outcome]
            self.master.write(f"{what} failed ({retry}): {record.error}")
        else:
            self.master.write(
                f"{what} {record.outcome or 'stale, ignored'}: {record.succeeded_items}"
                f"/{record.total_items} items in {record.duration_s:.3f} s"
            )

    def _note_error(self, what: str, log: str) -> None:
        """Called from agent threads for every failed attempt, before the ledger."""
        with self._lock:
            if self.user_errors is None:
                self.user_errors = LogFile(self.folder.user_error_summary)
            if not self.first_error[0]:
                self.first_error = (what, log)
        self.user_errors.write(f"{what} (full trace in {log})")

    def _agent_failed(self, agent: Agent, exc: Exception) -> None:
        """An agent cannot go on: its script cannot init(), or the agent broke."""
        if self.stop_event.is_set():
            return
        if isinstance(exc, ScriptError):
            cause = f"init() failed: {exc.message}"
            log = self.folder.relative(agent.error_log.path)
        else:
            cause = f"scoring agent {agent.process} failed: {type(exc).__name__}: {exc}"
            log = self.folder.relative(self.folder.master_log)
        self.master.write(f"{agent.process} cannot score: {cause}")
        with self._lock:
            if self.fatal is None:
                self.fatal = (cause, log)
        self.ledger.stop()

    def _threshold_breach(self, progress: Progress) -> str:
        settings = self.spec.settings
        if 0 <= settings.error_threshold < progress.items_failed:
            return (
                f"{progress.items_failed} items failed, more than error_threshold"
                f" {settings.error_threshold}; first error: {self.first_error[0]}"
            )
        if 0 <= settings.mini_batch_error_threshold < progress.failed:
            return (
                f"{progress.failed} mini-batches failed, more than"
                f" mini_batch_error_threshold {settings.mini_batch_error_threshold};"
                f" first error: {self.first_error[0]}"
            )
        return ""

    def _log_start(self) -> None:
        spec, settings = self.spec, self.spec.settings
        items = sum(b.item_count for b in self.batches)
        self.driver.write(
            f"Job {spec.name}: {len(self.batches)} mini-batches, {items} items from"
            f" {spec.input_path} ({spec.input_mode}) on node {spec.node}"
        )
        for key, value in settings.as_dict().items():
            self.driver.write(f"setting {key} = {value}")
        if self.checkpoint.next_index:
            self.driver.write(
                f"Resuming: mini-batches 0-{self.checkpoint.next_index - 1} of"
                f" {len(self.batches)} were committed by an earlier run"
            )
        self.master.write(
            f"Created {len(self.batches)} mini-batches of up to"
            f" {settings.mini_batch_size} from {items} items"
        )
        self._write_progress(self.ledger.progress(), "running")

    def _write_progress(
        self, progress: Progress, status: str, result: JobResult | None = None
    ) -> None:
        elapsed = time.monotonic() - self.started
        lines = [
            f"Job: {self.spec.name}",
            f"Status: {status}",
            f"Updated: {timestamp()}",
            f"Mini-batches created: {progress.total}",
            f"Mini-batches processed: {progress.processed}"
            f" (succeeded {progress.succeeded}, failed {progress.failed})",
            f"Mini-batches in progress: {progress.running},"
            f" pending: {progress.pending}",
            f"Items succeeded: {progress.items_succeeded},"
            f" failed: {progress.items_failed}",
            f"Elapsed: {elapsed:.1f} s",
        ]
        if progress.processed and not progress.finished and status == "running":
            eta = elapsed / progress.processed * (progress.total - progress.processed)
            lines.append(f"ETA: {eta:.1f} s")
        if result is not None:
            lines.append(f"Result: {result.summary_line()}")
            if result.error:
                lines.append(f"Cause: {result.error}")
                lines.append(
                    f"Look at: {result.error_log or 'logs/sys/master_role.txt'}"
                )
        write_atomic(self.folder.progress_overview, "\n".join(lines) + "\n")

    def _write_result(self, result: JobResult, progress: Progress) -> None:
        self._write_progress(progress, result.status, result)
        write_atomic(self.folder.job_result, result.summary_line() + "\n")
        if result.error:
            look_at = result.error_log or "logs/sys/master_role.txt"
            write_atomic(self.folder.job_error, f"{result.error}\nLook at: {look_at}\n")
        self.master.write(f"Job {result.status}: {result.summary_line()}")
        self.driver.write(f"Job {result.status}. {result.summary_line()}")
        for log in (self.driver, self.master, self.processed, self.user_errors):
            if log is not None:
                log.close()


def script_arguments(settings: Settings) -> tuple[str, ...]:
    """The job's settings as the scoring script's command line, Azure style."""
    return (
        "--logging_level", settings.logging_level,
        "--mini_batch_size", str(settings.mini_batch_size),
        "--output_action", settings.output_action,
        "--output_file_name", settings.output_file_name,
        "--error_threshold", str(settings.error_threshold),
        "--max_retries", str(settings.max_retries),
        "--timeout", f"{settings.timeout:g}",
        "--instance_count", str(settings.instance_count),
        "--max_concurrency_per_instance", str(settings.max_concurrency_per_instance),
    )  # fmt: skip
