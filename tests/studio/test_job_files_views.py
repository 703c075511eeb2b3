"""A job's Outputs + logs tab: tree, tail JSON, search, downloads, permissions."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from studio.models import Job, JobStatus
from studio.services.invoke import invoke
from tests.studio.test_jobs_support import deploy_script, make_job

READERS_AND_UP = [
    ("owner", 200),
    ("contributor", 200),
    ("reader", 200),
    ("outsider", 404),
]
STDOUT = "logs/user/stdout/node-a/process000.stdout.txt"
SECRET = "the secret outside the job folder"
STDOUT_TEXT = "init done\nWARNING: slow disk\nERROR: bad row 7\n"


def url(view: str, job: Job, **query: object) -> str:
    address = reverse(f"studio:{view}", args=[job.workspace.name, job.name])
    if query:
        address += "?" + "&".join(f"{key}={value}" for key, value in query.items())
    return address


@pytest.fixture
def job(cast) -> Job:
    """A running job whose folder holds a few logs, next to a secret file."""
    datastore = Path(settings.STUDIO_DATASTORE)
    job_dir = datastore / "jobs" / "live-job"
    files = {
        "azureml-logs/70_driver_log.txt": "driver started\n",
        "logs/job_progress_overview.txt": "Status: running\n",
        "logs/sys/master_role.txt": "created 2 mini-batches\n",
        STDOUT: STDOUT_TEXT,
        "outputs/predictions.csv": "file,score\na.txt,1\n",
    }
    for relative, text in files.items():
        (job_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (job_dir / relative).write_text(text)
    (datastore / "secret.txt").write_text(SECRET + "\n")
    (job_dir / "logs" / "leak.txt").symlink_to(datastore / "secret.txt")
    return make_job(
        cast.workspace, name="live-job", status=JobStatus.RUNNING, job_dir=str(job_dir)
    )


def append(job: Job, relative: str, text: str) -> None:
    with open(Path(job.job_dir, relative), "a") as file:
        file.write(text)


# permissions


@pytest.mark.parametrize(("who", "expected"), READERS_AND_UP)
@pytest.mark.parametrize(
    ("view", "query"),
    [
        ("job-outputs", {}),
        ("job-file-tail", {"path": STDOUT}),
        ("job-file-search", {"path": STDOUT, "q": "error"}),
        ("job-file-download", {"path": STDOUT}),
        ("job-logs-zip", {}),
    ],
)
def test_members_may_read_outputs_and_outsiders_learn_nothing(
    cast, job, who, expected, view, query
):
    response = cast.client(who).get(url(view, job, **query))

    assert response.status_code == expected
    streamed = getattr(response, "streaming", False)
    body = b"".join(response.streaming_content) if streamed else response.content
    response.close()
    if expected == 404:
        assert b"init done" not in body


@pytest.mark.parametrize("view", ["job-outputs", "job-file-tail", "job-logs-zip"])
def test_anonymous_visitors_are_sent_to_log_in(client, job, view):
    response = client.get(url(view, job, path=STDOUT))

    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


# the page


def test_the_page_shows_the_job_folder_as_a_tree_with_links(cast, job):
    response = cast.client("reader").get(url("job-outputs", job))

    page = response.content.decode()
    assert response.status_code == 200
    for folder in ("azureml-logs/", "logs/", "outputs/", "stdout/"):
        assert f"<summary>{folder}</summary>" in page
    assert f'href="?path={STDOUT}" data-path="{STDOUT}"' in page
    assert "leak.txt (link)" in page  # listed, never followed
    assert reverse("studio:job-logs-zip", args=["team", job.name]) in page
    assert 'aria-current="page">Outputs + logs</a>' in page


def test_the_page_opens_the_progress_overview_unless_told_otherwise(cast, job):
    client = cast.client("reader")

    default = client.get(url("job-outputs", job)).content.decode()
    deep_link = client.get(url("job-outputs", job, path=STDOUT)).content.decode()

    assert 'data-open-path="logs/job_progress_overview.txt"' in default
    assert f'data-open-path="{STDOUT}"' in deep_link


def test_the_page_escapes_a_hostile_deep_link(cast, job):
    hostile = '"><script>alert(1)</script>'

    page = cast.client("reader").get(url("job-outputs", job, path=hostile))

    assert b"<script>alert(1)" not in page.content


def test_the_page_of_a_queued_job_says_the_folder_fills_later(cast):
    queued = make_job(cast.workspace, status=JobStatus.QUEUED, job_dir="/nowhere/x")

    page = cast.client("reader").get(url("job-outputs", queued)).content.decode()

    assert "The job folder is empty: it fills once the job starts." in page


# tail


def test_it_opens_a_log_at_its_end_and_sends_only_new_bytes(cast, job):
    client = cast.client("reader")
    opened = client.get(url("job-file-tail", job, path=STDOUT)).json()
    append(job, STDOUT, "scored 10 rows\n")

    polled = client.get(
        url(
            "job-file-tail",
            job,
            path=STDOUT,
            offset=opened["end"],
            fingerprint=opened["fingerprint"],
        )
    ).json()

    assert opened["text"] == STDOUT_TEXT
    assert opened["start"] == 0 and opened["reset"] and not opened["terminal"]
    assert polled["text"] == "scored 10 rows\n"
    assert polled["start"] == opened["end"] and not polled["reset"]
    assert polled["end"] == polled["size"] == opened["end"] + 15
    assert set(polled) == {
        "path", "text", "start", "end", "size", "fingerprint", "reset", "terminal"
    }  # fmt: skip


def test_it_caps_a_poll_at_64_kb(cast, job):
    append(job, STDOUT, ("y" * 99 + "\n") * 2000)  # 200 KB

    client = cast.client("reader")
    opened = client.get(url("job-file-tail", job, path=STDOUT)).json()
    from_start = client.get(url("job-file-tail", job, path=STDOUT, offset=0)).json()

    assert opened["end"] == opened["size"]
    assert opened["end"] - opened["start"] <= 64 * 1024
    assert from_start["start"] == 0
    assert from_start["end"] <= 64 * 1024
    assert from_start["text"].endswith("\n")


def test_it_opens_a_gigabyte_log_within_one_quick_request(cast, job):
    with open(Path(job.job_dir, "logs/big.txt"), "wb") as file:
        file.truncate(1024**3)  # sparse: no disk used
        file.seek(1024**3)
        file.write(b"\nERROR: the last line\n")
    client = cast.client("reader")

    # This thread's CPU time: neither other processes nor other threads'
    # leftovers from earlier tests stretch it.
    started = time.thread_time()
    data = client.get(url("job-file-tail", job, path="logs/big.txt")).json()
    elapsed = time.thread_time() - started

    assert data["text"] == "ERROR: the last line\n"
    assert data["end"] == data["size"] == 1024**3 + 22
    assert elapsed < 1, f"opening a 1 GB log took {elapsed:.3f} s"


def test_it_loads_the_part_before_a_cursor(cast, job):
    client = cast.client("reader")
    text = (Path(job.job_dir) / STDOUT).read_text()

    earlier = client.get(url("job-file-tail", job, path=STDOUT, before=10)).json()

    assert earlier["text"] == text[:10] == "init done\n"
    assert (earlier["start"], earlier["end"]) == (0, 10)


def test_it_starts_over_when_a_summary_was_replaced(cast, job):
    client = cast.client("reader")
    overview = "logs/job_progress_overview.txt"
    opened = client.get(url("job-file-tail", job, path=overview)).json()
    Path(job.job_dir, overview).write_text("Status: done\n")

    polled = client.get(
        url(
            "job-file-tail",
            job,
            path=overview,
            offset=opened["end"],
            fingerprint=opened["fingerprint"],
        )
    ).json()

    assert polled["reset"]
    assert polled["text"] == "Status: done\n"


def test_it_says_a_job_is_terminal(cast, job):
    Job.objects.filter(pk=job.pk).update(status=JobStatus.COMPLETED)

    data = cast.client("reader").get(url("job-file-tail", job, path=STDOUT)).json()

    assert data["terminal"] is True


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "path: This field is required."),
        (f"path={STDOUT}&offset=-1", "offset: Ensure this value is greater than"),
        (f"path={STDOUT}&offset=abc", "offset: Enter a whole number."),
    ],
)
def test_it_refuses_bad_parameters(cast, job, query, message):
    response = cast.client("reader").get(url("job-file-tail", job) + "?" + query)

    assert response.status_code == 400
    assert response.json()["error"].startswith(message)


def test_a_missing_file_is_a_404_that_names_it(cast, job):
    response = cast.client("reader").get(
        url("job-file-tail", job, path="logs/nope.txt")
    )

    assert response.status_code == 404
    assert response.json() == {
        "error": "no file 'logs/nope.txt' in the job folder",
        "terminal": False,
    }


# traversal: nothing outside the job folder is ever read


TRAVERSALS = [
    ("../secret.txt", "'../secret.txt' is not a path inside the job folder"),
    ("%2e%2e%2fsecret.txt", "'../secret.txt' is not a path inside the job folder"),
    ("logs/..%2F..%2Fsecret.txt", "is not a path inside the job folder"),
    ("%252e%252e%252fsecret.txt", "no file '%2e%2e%2fsecret.txt' in the job folder"),
    ("/etc/passwd", "'/etc/passwd' is not a path inside the job folder"),
    ("%2Fetc%2Fpasswd", "'/etc/passwd' is not a path inside the job folder"),
    ("logs/leak.txt", "'logs/leak.txt' leads outside the job folder"),
]


@pytest.mark.parametrize(("path", "message"), TRAVERSALS)
@pytest.mark.parametrize("view", ["job-file-tail", "job-file-search"])
def test_json_views_refuse_paths_leaving_the_job_folder(cast, job, view, path, message):
    response = cast.client("owner").get(url(view, job, path=path, q="secret"))

    assert response.status_code == 404
    assert message in response.json()["error"]
    assert SECRET.encode() not in response.content


@pytest.mark.parametrize(("path", "message"), TRAVERSALS)
def test_downloads_refuse_paths_leaving_the_job_folder(cast, job, path, message):
    response = cast.client("owner").get(url("job-file-download", job, path=path))

    assert response.status_code == 404
    assert SECRET.encode() not in response.content


# search


def test_search_returns_matching_lines_with_numbers_and_offsets(cast, job):
    response = cast.client("reader").get(
        url("job-file-search", job, path=STDOUT, q="ERROR")
    )

    assert response.json() == {
        "path": STDOUT,
        "matches": [
            {
                "line_no": 3,
                "offset": STDOUT_TEXT.index("ERROR"),
                "line": "ERROR: bad row 7",
            }
        ],
        "more": False,
        "searched_bytes": len(STDOUT_TEXT),
        "size": len(STDOUT_TEXT),
    }


def test_search_needs_text(cast, job):
    response = cast.client("reader").get(url("job-file-search", job, path=STDOUT))

    assert response.status_code == 400
    assert response.json()["error"] == "q: This field is required."


# downloads


def test_it_downloads_a_file_as_an_attachment(cast, job):
    response = cast.client("reader").get(url("job-file-download", job, path=STDOUT))

    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        'attachment; filename="process000.stdout.txt"'
    )
    assert response["Content-Type"] == "text/plain"
    assert response["Content-Length"] == str(len(STDOUT_TEXT))
    assert b"".join(response.streaming_content) == STDOUT_TEXT.encode()


def test_it_downloads_the_log_folders_as_a_zip(cast, job):
    response = cast.client("reader").get(url("job-logs-zip", job))

    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="live-job-logs.zip"'
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert sorted(archive.namelist()) == [
        "azureml-logs/70_driver_log.txt",
        "logs/job_progress_overview.txt",
        "logs/sys/master_role.txt",
        STDOUT,
    ]
    assert SECRET.encode() not in b"".join(archive.read(n) for n in archive.namelist())


# a real job


def test_a_real_jobs_folder_is_browsable(cast, django_capture_on_commit_callbacks):
    endpoint = deploy_script(cast.workspace, cast.owner, "ok.py", files=3)
    with django_capture_on_commit_callbacks(execute=True):  # runs the job inline
        job = invoke(endpoint, cast.contributor, data_asset="texts:1")
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    client = cast.client("reader")

    page = client.get(url("job-outputs", job)).content.decode()
    stdout = client.get(url("job-file-tail", job, path=STDOUT)).json()
    result = client.get(url("job-file-download", job, path="logs/job_result.txt"))
    archive = zipfile.ZipFile(
        io.BytesIO(b"".join(client.get(url("job-logs-zip", job)).streaming_content))
    )

    for relative in (
        "azureml-logs/70_driver_log.txt",
        "logs/job_progress_overview.txt",
        "logs/sys/master_role.txt",
        STDOUT,
        "outputs/predictions.csv",
    ):
        assert f'data-path="{relative}"' in page
    assert ".state" not in page
    assert stdout["terminal"] and stdout["text"].startswith("init pid=")
    assert stdout["end"] == stdout["size"]
    assert b"completed" in b"".join(result.streaming_content)
    assert "logs/job_result.txt" in archive.namelist()
    assert archive.testzip() is None
