"""One node's share of a job: its scoring agents, their logs, its resource monitor."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from .agent import (
    Agent,
    AttemptRecord,
    ScoringCommand,
    processed_row,
    start_agent_threads,
)
from .errors import EngineError, EnvironmentBuildError, JobFolderError, ScriptError
from .jobfolder import PROCESSED_COLUMNS, CsvLog, JobFolder, LogFile
from .monitor import ResourceMonitor
from .partition import MiniBatch
from .spec import JobSpec, plan_job, scoring_command
from .state import BatchState, MiniBatchLedger

# How often a helping node looks at the shared ledger and reports it is alive.
_BEAT_EVERY_S = 1.0


class Instance:
    """`processes` agents on `spec.node`, claiming from a ledger maybe shared by nodes.

    Every attempt goes to the job's report and master log; the first error
    is kept for the job's cause, and an agent that cannot go on stops the
    ledger with its cause, which ends the job on every node.
    """

    def __init__(
        self,
        spec: JobSpec,
        folder: JobFolder,
        batches: Sequence[MiniBatch],
        ledger: MiniBatchLedger,
        command: ScoringCommand,
        processes: int,
        master: LogFile,
    ) -> None:
        self.spec = spec
        self.folder = folder
        self.ledger = ledger
        self.master = master
        self.processed = CsvLog(folder.processed_csv, PROCESSED_COLUMNS)
        self.user_errors: LogFile | None = None
        self.first_error = ("", "")
        self.stop_event = threading.Event()
        self._lock = threading.Lock()
        self.agents = [
            Agent(
                node=spec.node,
                process=f"process{number:03d}",
                command=command,
                batches=batches,
                ledger=ledger,
                folder=folder,
                report=self._record,
                note_error=self._note_error,
            )
            for number in range(max(1, min(processes, len(batches))))
        ]
        self.monitor = ResourceMonitor(
            folder.perf_dir(spec.node),
            spec.settings.resource_monitor_interval,
            watched_pids=lambda: {a.pid: a.process for a in self.agents if a.pid},
            disk_path=folder.root,
        )
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        self.monitor.start()
        self.master.write(
            f"Starting {len(self.agents)} scoring processes on node {self.spec.node}"
        )
        self.threads = start_agent_threads(
            self.agents, self.stop_event, self._agent_failed
        )

    def stop(self, kill: bool) -> None:
        """End the agents: `kill` their hosts at once, else let them shutdown()."""
        self.monitor.stop()
        self.stop_event.set()
        if kill:
            for agent in self.agents:
                if agent.host is not None:
                    agent.host.terminate()
        for thread in self.threads:
            thread.join(timeout=30)
        for log in (self.processed, self.user_errors):
            if log is not None:
                log.close()

    def _record(self, record: AttemptRecord) -> None:
        """Called from agent threads after every attempt."""
        self.processed.append(processed_row(self.spec.node, record))
        what = (
            f"mini-batch {record.index} attempt {record.attempt} on"
            f" {self.spec.node}/{record.process}"
        )
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
        self.master.write(f"{self.spec.node}/{agent.process} cannot score: {cause}")
        self.ledger.stop((cause, log))


def run_instance(
    spec: JobSpec,
    ledger: MiniBatchLedger,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_beat: Callable[[], None] = lambda: None,
) -> None:
    """Help score a job another node orchestrates, until its ledger closes.

    Runs `max_concurrency_per_instance` scoring processes on `spec.node`,
    logging under that node's folders of the job folder the orchestrator
    created. `on_beat` is called about once a second (the node's lease on
    its claims); `should_stop` is asked as often and kills the hosts when
    true. Raises JobFolderError or InputError when this node does not see
    the job's folder or input as the orchestrator did; failures after the
    start reach the job through the ledger.
    """
    folder = JobFolder(spec.job_dir)
    if not folder.parts_dir.is_dir():
        raise JobFolderError(
            f"job folder {folder.root} is not on this node, or its job ended",
            hint="every node must mount the shared datastore at the same path",
        )
    batches = plan_job(spec)
    if len(batches) != ledger.progress().total:
        raise EngineError(
            f"node {spec.node} sees {len(batches)} mini-batches in {spec.input_path},"
            f" the job has {ledger.progress().total}; the input changed or is not"
            " shared"
        )
    master = LogFile(folder.master_log)
    driver = LogFile(folder.driver_log)
    try:
        try:
            command = scoring_command(spec, folder, driver, beat=on_beat)
        except EnvironmentBuildError as exc:
            ledger.stop((exc.message, folder.relative(folder.environment_log)))
            return
        instance = Instance(
            spec,
            folder,
            batches,
            ledger,
            command,
            spec.settings.max_concurrency_per_instance,
            master,
        )
        driver.write(f"Node {spec.node} joined the job")
        instance.start()
        # Killed unless the job finished: one that ended unfinished (canceled,
        # failed), a stop asked for, or a broken ledger needs no last results.
        kill = True
        try:
            while not ledger.closed:
                on_beat()
                if should_stop():
                    break
                ledger.wait_for_change(ledger.generation, _BEAT_EVERY_S)
            else:
                kill = not ledger.progress().finished
        finally:
            instance.stop(kill=kill)
        driver.write(f"Node {spec.node} left the job")
    finally:
        master.close()
        driver.close()
