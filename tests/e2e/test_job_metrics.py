"""The Metrics and Errors tabs in a real browser: Plotly draws, tracebacks expand."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from studio import charts
from studio.models import Job, JobStatus
from studio.services.invoke import invoke
from tests.e2e.conftest import ARTIFACTS
from tests.studio.conftest import Cast
from tests.studio.test_jobs_support import deploy_script, make_job

pytestmark = pytest.mark.e2e

CHART_KEYS = [key for key, _ in charts.RESOURCE_CHARTS + charts.MINI_BATCH_CHARTS]
POLL_MS = 5_000  # job_metrics.js polls a running job this often


def url(job: Job, name: str) -> str:
    return reverse(f"studio:{name}", args=[job.workspace.name, job.name])


@pytest.fixture
def failed_attempts_job(cast: Cast) -> Job:
    """Monitored every 0.2 s; mini-batch 1 (files 2 and 3) fails both tries."""
    endpoint = deploy_script(
        cast.workspace,
        cast.owner,
        "raises_on_file.py",
        resource_monitor_interval=0.2,
        mini_batch_size=2,
        max_concurrency_per_instance=2,
        retry_settings={"max_retries": 2},
        environment_variables={"BAD_FILE": "file_003.txt"},
    )
    job = invoke(endpoint, cast.contributor, data_asset="texts:1")  # runs inline
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    return job


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=path, full_page=True)
    return path


def test_it_draws_every_chart_of_a_finished_job(owner_page: Page, failed_attempts_job):
    owner_page.goto(url(failed_attempts_job, "job-metrics"))

    for key in CHART_KEYS:
        chart = owner_page.locator(f'.js-plotly-plot[data-chart="{key}"]')
        expect(chart.locator(".main-svg").first).to_be_visible()
        expect(chart.locator("g.trace")).not_to_have_count(0)
    timeline = owner_page.locator('[data-chart="timeline"]')
    expect(timeline.locator(".legendtext")).to_have_text(
        ["succeeded", "failed", "failed, retried"]
    )
    expect(owner_page.locator("[data-group-empty]:visible")).to_have_count(0)
    expect(owner_page.locator("#job-metrics")).not_to_have_attribute(
        "data-metrics-url", re.compile(".*")
    )
    screenshot(owner_page, "job_metrics.png")


def test_the_errors_tab_expands_a_traceback(owner_page: Page, failed_attempts_job):
    owner_page.goto(url(failed_attempts_job, "job-metrics"))
    owner_page.get_by_role("link", name="Errors").click()

    expect(owner_page).to_have_url(
        re.compile(re.escape(url(failed_attempts_job, "job-errors")))
    )
    group = owner_page.locator(".error-group").filter(has_text="ValueError")
    expect(group.get_by_role("heading")).to_contain_text("2 attempts on 1 mini-batch")
    first = group.locator("details").first
    traceback = first.locator("pre.traceback")
    expect(traceback).to_be_hidden()

    first.locator("summary").click()

    expect(traceback).to_be_visible()
    expect(traceback).to_contain_text('raise ValueError(f"cannot score')
    expect(traceback).to_contain_text("ValueError: cannot score file_003.txt")
    screenshot(owner_page, "job_errors.png")


def test_the_charts_follow_a_running_job_until_it_ends(
    owner_page: Page, cast: Cast, failed_attempts_job, tmp_path: Path
):
    # A running job's folder: the finished one's, with one attempt reported so far.
    job_dir = tmp_path / "running"
    shutil.copytree(failed_attempts_job.job_dir, job_dir)
    report = job_dir / "logs/sys/job_report/processed_mini-batches.csv"
    lines = report.read_text().splitlines(keepends=True)
    report.write_text("".join(lines[:2]))
    job = make_job(cast.workspace, status=JobStatus.RUNNING, job_dir=str(job_dir))
    owner_page.clock.install()  # time flows, and the next poll can be fast-forwarded
    owner_page.goto(url(job, "job-metrics"))
    bars = owner_page.locator('[data-chart="timeline"] g.point')
    expect(bars).to_have_count(1)

    report.write_text("".join(lines))
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.COMPLETED, finished_at=timezone.now()
    )

    owner_page.clock.fast_forward(POLL_MS)

    expect(bars).to_have_count(len(lines) - 1)
    # That poll saw the job end, so polling stopped.
    expect(owner_page.locator("#job-metrics")).not_to_have_attribute(
        "data-metrics-url", re.compile(".*")
    )
