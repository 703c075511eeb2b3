"""The job page's Metrics tab, its live JSON, and the Errors tab."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from studio.models import Job, JobStatus
from studio.services.invoke import invoke
from tests.studio.test_jobs_support import deploy_script, make_job

TABS = ("job-metrics", "job-metrics-data", "job-errors")


def url(job: Job, name: str) -> str:
    return reverse(f"studio:{name}", args=[job.workspace.name, job.name])


def run_studio_job(cast, capture, script: str, **settings) -> Job:
    """A real job of `script` invoked through the studio, run to its end."""
    endpoint = deploy_script(cast.workspace, cast.owner, script, **settings)
    with capture(execute=True):
        job = invoke(endpoint, cast.contributor, data_asset="texts:1")
    job.refresh_from_db()
    return job


@pytest.fixture
def failed_attempts_job(cast, django_capture_on_commit_callbacks) -> Job:
    """Monitored; mini-batch 1 (files 2 and 3) fails both of its tries."""
    return run_studio_job(
        cast,
        django_capture_on_commit_callbacks,
        "raises_on_file.py",
        resource_monitor_interval=0.2,
        mini_batch_size=2,
        max_concurrency_per_instance=2,
        retry_settings={"max_retries": 2},
        environment_variables={"BAD_FILE": "file_003.txt"},
    )


def metrics_of(response) -> dict:
    """The figures the page embeds for job_metrics.js, as the browser reads them."""
    html = response.content.decode()
    start = html.index('<script id="job-metrics-data" type="application/json">')
    payload = html[start:].split(">", 1)[1].split("</script>", 1)[0]
    return json.loads(payload)


@pytest.mark.parametrize("who", ["owner", "contributor", "reader"])
def test_members_see_the_charts_of_a_finished_job(cast, failed_attempts_job, who):
    response = cast.client(who).get(url(failed_attempts_job, "job-metrics"))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'aria-current="page">Metrics</a>' in html
    assert "vendor/plotly-4.1.1.min.js" in html
    assert "studio/js/job_metrics.js" in html
    assert "data-metrics-url" not in html  # finished: nothing to poll
    metrics = metrics_of(response)
    assert metrics["terminal"] and metrics["monitored"]
    assert {"node_cpu", "process_rss", "timeline", "throughput"} <= set(
        metrics["charts"]
    )
    for key in metrics["charts"]:
        assert f'data-chart="{key}"' in html


@pytest.mark.parametrize("who", ["owner", "contributor", "reader"])
def test_members_get_fresh_figures_as_json(cast, failed_attempts_job, who):
    response = cast.client(who).get(url(failed_attempts_job, "job-metrics-data"))

    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"]
    data = response.json()
    assert data["status"] == "completed" and data["terminal"]
    timeline = data["charts"]["timeline"]
    assert {t["name"] for t in timeline["data"]} == {
        "succeeded",
        "failed",
        "failed, retried",
    }


@pytest.mark.parametrize("who", ["owner", "contributor", "reader"])
def test_members_see_the_errors_grouped_with_their_tracebacks(
    cast, failed_attempts_job, who
):
    response = cast.client(who).get(url(failed_attempts_job, "job-errors"))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'aria-current="page">Errors</a>' in html
    assert "<code>ValueError</code>" in html
    assert "2 attempts on 1 mini-batch" in html
    assert html.count("<details>") == 2
    assert "mini-batch 1 · attempt 2" in html
    assert "file_002.txt (+1 more)" in html
    assert "raise ValueError(f&quot;cannot score" in html  # escaped traceback
    assert "logs/user/error.txt" in html


@pytest.mark.parametrize("name", TABS)
def test_outsiders_get_404_and_anonymous_users_the_login_page(cast, name):
    job = make_job(cast.workspace, status=JobStatus.COMPLETED)

    assert cast.client("outsider").get(url(job, name)).status_code == 404
    response = Client().get(url(job, name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", TABS)
def test_the_tabs_only_answer_get(cast, name):
    job = make_job(cast.workspace, status=JobStatus.COMPLETED)

    assert cast.client("owner").post(url(job, name)).status_code == 405


@pytest.mark.parametrize("name", TABS)
def test_each_tab_costs_a_fixed_number_of_queries(
    cast, failed_attempts_job, name, django_assert_num_queries
):
    client = cast.client("reader")
    address = url(failed_attempts_job, name)

    # Session, user, membership with its workspace, job.
    with django_assert_num_queries(4):
        response = client.get(address)

    assert response.status_code == 200


def test_it_says_monitoring_was_off_and_still_charts_the_mini_batches(
    cast, django_capture_on_commit_callbacks
):
    job = run_studio_job(
        cast, django_capture_on_commit_callbacks, "ok.py", mini_batch_size=2
    )
    assert job.settings["resource_monitor_interval"] == 0

    response = cast.client("reader").get(url(job, "job-metrics"))

    html = response.content.decode()
    assert "Resource monitoring was off for this job" in html
    assert 'data-chart="node_cpu"' not in html
    assert set(metrics_of(response)["charts"]) == {
        "timeline",
        "throughput",
        "run_durations",
    }


def test_init_failures_come_first_on_the_errors_tab(
    cast, django_capture_on_commit_callbacks
):
    job = run_studio_job(cast, django_capture_on_commit_callbacks, "bad_init.py")
    assert job.status == JobStatus.FAILED

    html = cast.client("reader").get(url(job, "job-errors")).content.decode()

    assert "Why it failed" in html
    assert '<span class="error-kind">init() failed</span>' in html
    assert "<code>FileNotFoundError</code>" in html
    assert "FileNotFoundError: model.pkl not found in the model folder" in html
    assert "script.init()" in html
    metrics = cast.client("reader").get(url(job, "job-metrics")).content.decode()
    assert "No mini-batch ran in this job." in metrics


def test_a_running_job_polls_and_waits_for_its_first_samples(cast, tmp_path):
    job = make_job(cast.workspace, status=JobStatus.RUNNING, job_dir=str(tmp_path))

    html = cast.client("reader").get(url(job, "job-metrics")).content.decode()

    assert f'data-metrics-url="{url(job, "job-metrics-data")}"' in html
    assert "No resource samples yet" in html
    assert "No mini-batch has finished yet." in html
    assert cast.client("reader").get(url(job, "job-metrics-data")).json() == {
        "status": "running",
        "terminal": False,
        "monitored": False,
        "charts": {},
    }


def test_the_errors_tab_has_an_empty_state(cast, tmp_path):
    job = make_job(cast.workspace, status=JobStatus.COMPLETED, job_dir=str(tmp_path))

    html = cast.client("reader").get(url(job, "job-errors")).content.decode()

    assert "No script errors" in html
    assert "<details>" not in html


def test_script_text_in_the_logs_is_escaped_everywhere(cast, failed_attempts_job):
    job_dir = Path(failed_attempts_job.job_dir)
    hostile = "<script>alert(1)</script>"
    for log in job_dir.glob("logs/user/error/*/*.txt"):
        log.write_text(log.read_text().replace("file_003.txt", hostile))
    report = job_dir / "logs/sys/job_report/processed_mini-batches.csv"
    report.write_text(report.read_text().replace("file_003.txt", hostile))
    client = cast.client("reader")

    errors = client.get(url(failed_attempts_job, "job-errors")).content.decode()
    metrics = client.get(url(failed_attempts_job, "job-metrics")).content.decode()

    assert hostile not in errors and hostile not in metrics
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in errors
    # The figure's hover text is escaped for Plotly, then json_script escapes it.
    assert "\\u0026lt;script\\u0026gt;alert(1)" in metrics
