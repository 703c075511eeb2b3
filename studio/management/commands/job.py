"""`manage.py job show|stream|list|cancel|resume|download`, as `az ml job`."""

from __future__ import annotations

import time
from pathlib import Path, PurePosixPath
from typing import Any

from django.core.management.base import (
    BaseCommand,
    CommandError,
    CommandParser,
    OutputWrapper,
)
from django.urls import reverse

from ... import cli, jobfiles
from ...models import Job, JobStatus, Role
from ...services.jobs import cancel_job, job_status, resume_job

POLL_S = 1.0
DRIVER_LOG = "azureml-logs/70_driver_log.txt"
OVERVIEW = "logs/job_progress_overview.txt"
# After this long queued, say once that a worker cluster must be running.
QUEUED_HINT_S = 10
QUEUED_HINT = (
    "The job is still queued: a worker cluster (`manage.py serve` or"
    " `manage.py qcluster`) must be running to start it."
)
BAR_WIDTH = 30
DOWNLOAD_MAX_ENTRIES = 1_000_000
TABLE_COLUMNS = ("name", "status", "endpoint_name", "deployment", "percent")


class Command(BaseCommand):
    help = "Jobs, as `az ml job`: show, stream, list, cancel, resume, download."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
        cli.add_name(cli.add_verb(verbs, "show", "Show a job as JSON."), "job")
        stream = cli.add_verb(
            verbs, "stream", "Follow a job's driver log and progress until it ends."
        )
        cli.add_name(stream, "job")
        listing = cli.add_verb(
            verbs, "list", "List the workspace's jobs, newest first."
        )
        listing.add_argument(
            "--endpoint", "-e", default="", help="only this endpoint's"
        )
        listing.add_argument("--status", "-s", choices=JobStatus.values, default="")
        listing.add_argument("--max-results", "-r", type=int, default=100)
        cli.add_name(cli.add_verb(verbs, "cancel", "Cancel a job."), "job")
        resume = cli.add_verb(
            verbs,
            "resume",
            "Queue a failed or canceled job again; only the mini-batches it had"
            " not committed run.",
        )
        cli.add_name(resume, "job")
        resume.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="SETTING=VALUE",
            help="a setting for the rest of the job, e.g."
            " mini_batch_error_threshold=-1 (not mini_batch_size)",
        )
        download = cli.add_verb(verbs, "download", "Copy a job's outputs (and logs).")
        cli.add_name(download, "job")
        download.add_argument(
            "--output-dir",
            "--download-path",
            dest="output_dir",
            required=True,
            help="a new or empty folder",
        )
        download.add_argument("--all", action="store_true", help="logs too")

    def handle(self, *args: Any, verb: str, **options: Any) -> None:
        getattr(self, f"_{verb}")(options)

    def _job(self, options: dict[str, Any], role: str = Role.READER) -> Job:
        caller = cli.Caller.from_options(options)
        return caller.job(cli.name_of(options, "job"), role)

    def _show(self, options: dict[str, Any]) -> None:
        cli.emit(self.stdout, job_dict(self._job(options)), options, TABLE_COLUMNS)

    def _stream(self, options: dict[str, Any]) -> None:
        stream_job(self.stdout, self._job(options))

    def _list(self, options: dict[str, Any]) -> None:
        workspace = cli.Caller.from_options(options).workspace()
        jobs = Job.objects.for_workspace(workspace).select_related("created_by")
        if options["endpoint"]:
            jobs = jobs.filter(endpoint_name=options["endpoint"])
        if options["status"]:
            jobs = jobs.filter(status=options["status"])
        rows = []
        for job in jobs[: max(0, options["max_results"])]:
            job.workspace = workspace
            rows.append(job_dict(job))
        cli.emit(self.stdout, rows, options, TABLE_COLUMNS)

    def _cancel(self, options: dict[str, Any]) -> None:
        job = self._job(options, Role.CONTRIBUTOR)
        with cli.service_errors():
            cancel_job(job)
        cli.emit(self.stdout, job_dict(job), options, TABLE_COLUMNS)

    def _resume(self, options: dict[str, Any]) -> None:
        job = self._job(options, Role.CONTRIBUTOR)
        overrides = cli.key_values(options["set"], "--set")
        with cli.service_errors():
            resume_job(job, overrides)
        cli.emit(self.stdout, job_dict(job), options, TABLE_COLUMNS)

    def _download(self, options: dict[str, Any]) -> None:
        job = self._job(options)
        target = Path(options["output_dir"]).expanduser().resolve()
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise CommandError(
                f"--output-dir {target}: already exists and is not empty; nothing"
                " was overwritten. Give a new or empty folder"
            )
        files, size = download_job_files(job, target, everything=options["all"])
        if not job.is_terminal:
            self.stderr.write(f"job '{job.name}' is {job.status}: files may be partial")
        summary = {
            "name": job.name,
            "status": job.status,
            "output_dir": str(target),
            "files": files,
            "bytes": size,
        }
        cli.emit(self.stdout, summary, options)


def job_dict(job: Job) -> dict[str, Any]:
    """A job as `job show` prints it: identity, progress, cause, where to look."""
    return {
        "name": job.name,
        "endpoint_name": job.endpoint_name,
        "deployment": job.deployment_label,
        **job_status(job),
        "input": job.input,
        "input_path": job.input_path,
        "input_type": job.input_type,
        "output_path": job.job_dir,
        "settings": job.settings,
        "overrides": job.overrides,
        "tags": job.tags,
        "created_by": cli.username(job.created_by),
        "created_at": cli.isotime(job.created_at),
        "started_at": cli.isotime(job.started_at),
        "finished_at": cli.isotime(job.finished_at),
        "studio_url": reverse("studio:job-detail", args=[job.workspace.name, job.name]),
    }


def download_job_files(job: Job, target: Path, everything: bool) -> tuple[int, int]:
    """Copy `outputs/` (everything visible, with `everything`) of the job folder.

    jobfiles lists and opens the files, so links never lead outside the job
    folder and a growing log is copied as it was when reached.
    """
    job_dir = Path(job.job_dir)
    files = size = 0
    for entry in jobfiles.tree(job_dir, DOWNLOAD_MAX_ENTRIES):
        wanted = everything or entry.path.startswith("outputs/")
        if entry.is_dir or entry.is_link or not wanted:
            continue
        try:
            snapshot = jobfiles.FileSnapshot(job_dir, entry.path)
        except OSError:
            continue  # gone or not a regular file since listed
        destination = target.joinpath(*PurePosixPath(entry.path).parts)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            with destination.open("xb") as sink:
                for block in snapshot:
                    sink.write(block)
        finally:
            snapshot.close()
        files, size = files + 1, size + snapshot.size
    return files, size


def stream_job(stdout: OutputWrapper, job: Job) -> None:
    """Follow the driver log and progress until the job ends and logs are drained.

    Raises CommandError (exit 1) unless the job completed.
    """
    follower = _Follower(stdout, Path(job.job_dir))
    stdout.write(
        f"Streaming job {job.name} ({job.status}); Ctrl-C stops following, not the job."
    )
    queued_since = time.monotonic()
    try:
        while True:
            job.refresh_from_db()
            # Read the status before the logs: once it is terminal, the engine
            # has written its last line, so this round's drain gets it all.
            ended = job.is_terminal
            follower.poll(job)
            if job.status == JobStatus.QUEUED and queued_since:
                if time.monotonic() - queued_since > QUEUED_HINT_S:
                    follower.line(QUEUED_HINT)
                    queued_since = 0.0
            if ended:
                break
            stdout.flush()
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        raise CommandError(
            f"stopped following job '{job.name}', which goes on ({job.status});"
            f" `job stream {job.name}` follows it again",
            returncode=130,
        ) from None
    follower.finish()
    _report_end(stdout, job)


def _report_end(stdout: OutputWrapper, job: Job) -> None:
    counts = (
        f"{job.mini_batches_succeeded} of {job.mini_batches_total} mini-batches"
        f" succeeded, {job.items_succeeded} items scored, {job.items_failed} failed"
    )
    path = job_dict(job)["studio_url"]
    stdout.write(f"Job {job.name} {job.status}: {counts}. Studio: {path}")
    stdout.write(f"Outputs: {Path(job.job_dir) / 'outputs'}")
    stdout.flush()
    if job.status != JobStatus.COMPLETED:
        look = f" Look at {job.error_log}." if job.error_log else ""
        cause = job.error or "no cause recorded"
        raise CommandError(
            cli.one_line(f"job '{job.name}' {job.status}: {cause}.{look}")
        )


class _Follower:
    """Prints new driver-log lines, the progress overview and a progress bar."""

    def __init__(self, stdout: OutputWrapper, job_dir: Path) -> None:
        self.stdout = stdout
        self.job_dir = job_dir
        self.cursor = 0
        self.at_line_start = True
        self.bar = ""
        self.overview = ""

    def poll(self, job: Job) -> None:
        self._drain_driver_log()
        if not self.overview or job.is_terminal:
            self._show_overview()
        bar = progress_bar(job)
        if bar != self.bar:
            self.line(bar)
            self.bar = bar

    def finish(self) -> None:
        if not self.at_line_start:
            self.stdout.write("")
            self.at_line_start = True

    def line(self, text: str) -> None:
        self.finish()
        self.stdout.write(text)

    def _drain_driver_log(self) -> None:
        while True:
            try:
                chunk = jobfiles.tail(self.job_dir, DRIVER_LOG, self.cursor)
            except OSError:
                return  # not written yet
            if chunk.start < self.cursor:
                return  # replaced by a shorter file: not a log this follows
            if chunk.text:
                self.stdout.write(chunk.text, ending="")
                self.at_line_start = chunk.text.endswith("\n")
            if chunk.end <= self.cursor or chunk.end >= chunk.size:
                self.cursor = max(self.cursor, chunk.end)
                return
            self.cursor = chunk.end

    def _show_overview(self) -> None:
        """The overview is replaced whole as the job goes: shown when it first
        appears and as it ends; the bar carries the progress in between."""
        try:
            text = jobfiles.tail(self.job_dir, OVERVIEW, 0).text
        except OSError:
            return
        if text.strip() and text != self.overview:
            self.line(f"--- {OVERVIEW}\n{text.rstrip()}\n---")
            self.overview = text


def progress_bar(job: Job) -> str:
    """`[#####.....] 3/10 mini-batches 30% ETA 12s (running)`."""
    total, done = job.mini_batches_total, job.mini_batches_done
    filled = BAR_WIDTH * done // total if total else 0
    if job.status == JobStatus.COMPLETED:
        filled = BAR_WIDTH
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    if not total and not job.is_terminal:
        return f"[{bar}] no mini-batches yet ({job.status})"
    text = f"[{bar}] {done}/{total} mini-batches {job.percent_done}%"
    if job.mini_batches_failed:
        text += f", {job.mini_batches_failed} failed"
    eta = job.eta_seconds
    if eta is not None:
        text += f" ETA {_duration(eta)}"
    return f"{text} ({job.status})"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
