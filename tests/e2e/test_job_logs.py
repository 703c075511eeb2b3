"""Outputs + logs in a real browser: a running job's log grows on screen, search
jumps to a line, ERROR lines are highlighted, the viewer stops once the job ends."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from playwright.sync_api import Page, expect

from studio.models import Job, JobStatus
from tests.studio.conftest import Cast
from tests.studio.test_jobs_support import make_job

pytestmark = pytest.mark.e2e

STDOUT = "logs/user/stdout/node-a/process000.stdout.txt"


@pytest.fixture
def running_job(cast: Cast) -> Job:
    job_dir = Path(settings.STUDIO_DATASTORE) / "jobs" / "live-job"
    files = {
        "azureml-logs/70_driver_log.txt": "driver started\n",
        "logs/job_progress_overview.txt": "Status: running\n",
        STDOUT: "".join(f"scoring file {n}\n" for n in range(300))
        + "WARNING: slow disk\nERROR: bad row <b>7</b>\n",
    }
    for relative, text in files.items():
        (job_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (job_dir / relative).write_text(text)
    return make_job(
        cast.workspace, name="live-job", status=JobStatus.RUNNING, job_dir=str(job_dir)
    )


def outputs_url(job: Job) -> str:
    return reverse("studio:job-outputs", args=[job.workspace.name, job.name])


def append(job: Job, relative: str, text: str) -> None:
    with open(Path(job.job_dir, relative), "a") as file:
        file.write(text)


def test_a_running_jobs_log_grows_on_screen_and_search_jumps_to_a_line(
    owner_page: Page, running_job: Job
):
    page = owner_page
    page.goto(outputs_url(running_job))
    log = page.locator("[data-log]")
    expect(log).to_have_text("Status: running\n")  # the overview opens by default

    for folder in ("user/", "stdout/", "node-a/"):  # closed until opened
        page.locator("summary").filter(has_text=re.compile(f"^{folder}$")).click()
    page.get_by_role("link", name="process000.stdout.txt").click()

    expect(page).to_have_url(
        re.compile(re.escape(f"?path={STDOUT}".replace("/", "%2F")))
    )
    expect(log).to_contain_text("scoring file 299")
    error = log.locator(".log-error")
    expect(error).to_have_text("ERROR: bad row <b>7</b>\n")  # text, never markup
    expect(log.locator(".log-warning")).to_have_text("WARNING: slow disk\n")
    expect(log.locator("b")).to_have_count(0)

    append(running_job, STDOUT, "appended while watching\nERROR: second failure\n")

    expect(log).to_contain_text("appended while watching")
    expect(log.locator(".log-error")).to_have_count(2)
    assert page.evaluate(
        "() => { const v = document.querySelector('[data-log]');"
        " return v.scrollHeight - v.scrollTop - v.clientHeight < 50; }"
    ), "the view follows the end of the log"

    page.get_by_role("searchbox", name="Search this file").fill("SCORING FILE 12")
    page.get_by_role("button", name="Search").click()
    results = page.locator("[data-search-results] li")
    expect(results).to_have_count(11)  # 12 and 120..129
    expect(page.locator("[data-search-summary]")).to_have_text("11 matching lines.")
    results.first.get_by_role("button", name="line 13").click()
    expect(log.locator(".log-hit")).to_have_text("scoring file 12\n")
    expect(log.locator(".log-hit")).to_be_in_viewport()


def test_it_stops_following_once_the_job_has_ended(owner_page: Page, running_job: Job):
    page = owner_page
    page.goto(outputs_url(running_job) + f"?path={STDOUT}")
    log = page.locator("[data-log]")
    status = page.locator("[data-viewer-status]")
    expect(status).to_contain_text("Following the job")

    append(running_job, STDOUT, "last words\n")
    Job.objects.filter(pk=running_job.pk).update(status=JobStatus.COMPLETED)

    expect(log).to_contain_text("last words")
    # Shown once the viewer has stopped polling: the whole file is on screen.
    expect(status).to_contain_text("The job has ended: this is the whole file")


def test_a_deep_link_opens_the_file_and_its_folders(owner_page: Page, running_job: Job):
    page = owner_page
    page.goto(outputs_url(running_job) + f"?path={STDOUT}")

    link = page.get_by_role("link", name="process000.stdout.txt")
    expect(link).to_be_visible()  # its closed folders were opened
    expect(link).to_have_attribute("aria-current", "true")
    expect(page.get_by_role("heading", name=STDOUT)).to_be_visible()
    download = page.get_by_role("link", name="Download", exact=True)
    expect(download).to_have_attribute("href", re.compile(r"/outputs/download/\?path="))


def test_a_path_outside_the_job_folder_shows_why_it_cannot_open(
    owner_page: Page, running_job: Job
):
    owner_page.goto(outputs_url(running_job) + "?path=../../secret.txt")

    expect(owner_page.locator("[data-viewer-status]")).to_have_text(
        "Cannot read ../../secret.txt: '../../secret.txt' is not a path inside the"
        " job folder"
    )


def test_scrolling_to_the_top_loads_earlier_parts_until_the_start(
    owner_page: Page, running_job: Job
):
    big = "logs/sys/master_role.txt"
    text = "".join(f"row {n:05d} {'é' * 40}\n" for n in range(5000))  # ~ 400 KB
    Path(running_job.job_dir, big).parent.mkdir(parents=True, exist_ok=True)
    Path(running_job.job_dir, big).write_text(text)
    page = owner_page
    page.goto(outputs_url(running_job) + f"?path={big}")
    log = page.locator("[data-log]")
    expect(log).to_contain_text("row 04999")
    expect(log).not_to_contain_text("row 00000")

    page.wait_for_function(
        "() => { const view = document.querySelector('[data-log]');"
        " view.scrollTop = 0; return view.textContent.includes('row 00000'); }",
        polling=100,
    )

    assert log.evaluate("view => view.textContent") == text
