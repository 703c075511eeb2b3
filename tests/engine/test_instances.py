"""One job over two nodes: an orchestrator and a helping instance share a ledger."""

from __future__ import annotations

import csv
import dataclasses
import threading
from pathlib import Path

import psutil

from scoring_engine import BatchState, JobSpec, load_deployment, run_instance, run_job
from scoring_engine.jobfolder import JobFolder, LogFile
from scoring_engine.spec import scoring_command
from scoring_engine.state import Ledger
from tests.conftest import write_deployment
from tests.engine.test_run_job import make_spec
from tests.factories import make_wheel


def helped_by(spec_b: JobSpec, threads: list[threading.Thread]):
    """A ledger factory that also starts node B's instance on the new ledger."""

    def factory(item_counts, tries) -> Ledger:
        ledger = Ledger(item_counts, tries)
        thread = threading.Thread(target=run_instance, args=(spec_b, ledger))
        thread.start()
        threads.append(thread)
        return ledger

    return factory


def test_a_job_spreads_over_two_nodes_each_logging_under_its_own_folder(
    tmp_path, text_inputs
):
    spec = make_spec(
        tmp_path,
        text_inputs,
        "rendezvous.py",
        mini_batch_size=1,
        resource_monitor_interval=1,
        environment_variables={
            "RENDEZVOUS_DIR": str(tmp_path / "peers"),
            "PEERS": "2",
        },
    )
    spec_b = dataclasses.replace(spec, node="node-b")
    threads: list[threading.Thread] = []

    result = run_job(spec, ledger_factory=helped_by(spec_b, threads), processes=1)
    for thread in threads:
        thread.join(timeout=60)

    assert result.status == "completed", result.error
    assert result.items_succeeded == 12
    output = (tmp_path / "job/outputs/predictions.csv").read_text().splitlines()
    assert output == [f"file_{n:03d}.txt" for n in range(12)]
    job = tmp_path / "job/logs"
    assert {p.name for p in (job / "sys/node").iterdir()} == {"node-a", "node-b"}
    assert {p.name for p in (job / "perf").iterdir()} == {"node-a", "node-b"}
    with open(job / "sys/job_report/processed_mini-batches.csv") as report:
        rows = list(csv.DictReader(report))
    assert {row["node"] for row in rows} == {"node-a", "node-b"}
    assert sorted(int(row["mini_batch"]) for row in rows) == list(range(12))
    driver = (tmp_path / "job/azureml-logs/70_driver_log.txt").read_text()
    assert "Node node-b joined the job" in driver
    assert "Node node-b left the job" in driver


def test_a_node_that_cannot_init_fails_the_whole_job_with_its_cause(
    tmp_path, text_inputs
):
    spec = make_spec(
        tmp_path, text_inputs, "slow_until_fixed.py", mini_batch_size=1,
        environment_variables={"SLEEP_S": "0.2"},
    )  # fmt: skip
    broken = load_deployment(
        write_deployment(tmp_path / "b", "bad_init.py", mini_batch_size=1)
    )
    spec_b = dataclasses.replace(spec, node="node-b", deployment=broken)
    threads: list[threading.Thread] = []

    result = run_job(spec, ledger_factory=helped_by(spec_b, threads), processes=1)
    for thread in threads:
        thread.join(timeout=60)

    assert result.status == "failed"
    assert "model.pkl not found" in result.error
    assert result.error_log == "logs/user/error/node-b/process000.txt"
    assert not any(thread.is_alive() for thread in threads)


def test_the_callers_heartbeat_goes_on_while_an_environment_builds(tmp_path):
    wheel = make_wheel(tmp_path / "wheels", "bs_beat")
    spec = make_spec(
        tmp_path, tmp_path, "ok.py", environment={"python_requirements": [str(wheel)]}
    )
    folder = JobFolder.create(spec.job_dir)
    driver = LogFile(folder.driver_log)
    beats = []

    command = scoring_command(
        spec, folder, driver, beat=lambda: beats.append(1), every_s=0.01
    )
    driver.close()

    assert Path(command.python).is_relative_to(spec.env_cache)
    assert beats, "no heartbeat while the environment was built"


class HidesTheLastOutcome(Ledger):
    """A ledger fault: every mini-batch finishes, the last one never reads so."""

    def outcome(self, index: int) -> tuple[BatchState, int, int]:
        if index == len(self._entries) - 1:
            return BatchState.RUNNING, 0, 0
        return super().outcome(index)


def test_a_job_whose_output_misses_a_mini_batch_is_failed_and_resumable(
    tmp_path, text_inputs
):
    spec = make_spec(tmp_path, text_inputs, "ok.py", mini_batch_size=1)

    broken = run_job(spec, ledger_factory=HidesTheLastOutcome)

    assert broken.status == "failed"
    assert "the output holds mini-batches 0-10 of 12" in broken.error
    resumed = run_job(spec, resume=True)
    assert resumed.status == "completed"
    output = (tmp_path / "job/outputs/predictions.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in output] == [
        f"file_{n:03d}.txt" for n in range(12)
    ]


class BreaksOnceScoring(Ledger):
    """A ledger whose store goes away (a database outage) once scoring began."""

    def __init__(self, item_counts, tries) -> None:
        super().__init__(item_counts, tries)
        self.scoring = threading.Event()

    def succeed(self, claim, items_succeeded: int, items_failed: int) -> bool:
        self.scoring.set()
        return super().succeed(claim, items_succeeded, items_failed)

    @property
    def closed(self) -> bool:
        if self.scoring.is_set() and threading.current_thread().name == "helper":
            raise ConnectionError("the ledger's database went away")
        return super().closed


def test_a_helper_whose_ledger_breaks_leaves_no_scoring_process(tmp_path, text_inputs):
    spec = make_spec(
        tmp_path, text_inputs, "slow_until_fixed.py", mini_batch_size=1,
        environment_variables={"SLEEP_S": "0.2"},
    )  # fmt: skip
    folder = JobFolder.create(spec.job_dir)
    ledger = BreaksOnceScoring([1] * 12, tries=3)
    ledger.restore(0, 0, (0, 0))
    raised: list[BaseException] = []

    def helper() -> None:
        try:
            run_instance(dataclasses.replace(spec, node="node-b"), ledger)
        except ConnectionError as exc:
            raised.append(exc)

    thread = threading.Thread(target=helper, name="helper")
    thread.start()
    thread.join(timeout=60)

    assert not thread.is_alive() and raised, "the ledger's failure was not raised"
    assert not psutil.Process().children(recursive=True), "a scoring host outlived it"
    driver = folder.driver_log.read_text()
    assert "Node node-b joined the job" in driver
