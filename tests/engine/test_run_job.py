"""run_job as the studio calls it: progress reports and cancellation."""

from __future__ import annotations

import psutil

from scoring_engine import JobSpec, load_deployment, run_job
from tests.conftest import write_deployment


def make_spec(tmp_path, inputs, script, **fields) -> JobSpec:
    deployment = load_deployment(write_deployment(tmp_path, script, **fields))
    return JobSpec(
        name="job-under-test",
        deployment=deployment,
        input_path=inputs,
        job_dir=tmp_path / "job",
        node="node-a",
        env_cache=tmp_path / "envs",
    )


def test_it_reports_progress_while_running(tmp_path, text_inputs):
    spec = make_spec(tmp_path, text_inputs, "ok.py", mini_batch_size=1)
    reports = []

    result = run_job(spec, on_progress=reports.append)

    assert result.succeeded and result.items_succeeded == 12
    assert reports and reports[0].total == 12


def test_it_cancels_on_request_and_stops_its_scoring_processes(tmp_path, text_inputs):
    spec = make_spec(
        tmp_path,
        text_inputs,
        "hangs.py",
        max_concurrency_per_instance=2,
        environment_variables={"HANG_FILE": "file_000.txt"},
    )
    hosts: list[int] = []

    def cancel_once_scoring() -> bool:
        hosts.extend(p.pid for p in psutil.Process().children(recursive=True))
        return bool(hosts)

    result = run_job(spec, should_cancel=cancel_once_scoring)

    assert result.status == "canceled"
    assert "canceled by request" in (tmp_path / "job/logs/job_result.txt").read_text()
    assert (
        "Status: canceled"
        in (tmp_path / "job/logs/job_progress_overview.txt").read_text()
    )
    assert not any(psutil.pid_exists(pid) for pid in hosts if _alive(pid))


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_an_error_in_the_callers_hook_is_written_to_the_job_folder(
    tmp_path, text_inputs
):
    spec = make_spec(tmp_path, text_inputs, "ok.py", mini_batch_size=1)

    def broken_progress(progress):
        raise ConnectionError("database went away")

    result = run_job(spec, on_progress=broken_progress)

    assert result.status == "failed"
    assert result.error == "engine error: ConnectionError: database went away"
    assert result.error_log == "logs/sys/master_role.txt"
    master = (tmp_path / "job/logs/sys/master_role.txt").read_text()
    assert "Traceback" in master and "database went away" in master
    assert (
        "Status: failed"
        in (tmp_path / "job/logs/job_progress_overview.txt").read_text()
    )
