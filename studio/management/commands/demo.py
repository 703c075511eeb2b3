"""`manage.py demo`: seed the demo once, then say how to open it."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import NoReverseMatch

from ...demo import DemoError, seed_demo
from ...models import Job


class Command(BaseCommand):
    help = (
        "Create what is missing of the demo: user, workspace, model, data asset,"
        " endpoint with a deployment, and one completed job. Safe to rerun."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port",
            type=int,
            default=8000,
            help="port the studio serves on, for the printed addresses",
        )

    def handle(self, *args: Any, port: int, **options: Any) -> None:
        self.stdout.write(
            "Seeding the demo (the first run trains a model and runs a job) ..."
        )
        try:
            demo = seed_demo()
        except ValidationError as exc:
            raise CommandError(f"demo: {'; '.join(exc.messages)}") from exc
        except DemoError as exc:
            raise CommandError(f"demo: {exc}") from exc
        for part in demo.created:
            self.stdout.write(f"  created {part}")
        base = f"http://127.0.0.1:{port}"
        self.stdout.write(self.style.SUCCESS("The demo is ready."))
        self.stdout.write(
            f"  Studio:     {base}/\n"
            f"  Sign in:    {demo.user.username} / {demo.password}\n"
            f"  Workspace:  {base}{demo.workspace.get_absolute_url()}\n"
            f"  A job:      {base}{job_path(demo.job)}\n"
            f"  Job folder: {demo.job.job_dir}\n"
            "Next: sign in, open the job and its Outputs + logs; invoke the"
            f" '{demo.endpoint.name}' endpoint on the demo data for a job of your own."
        )


def job_path(job: Job) -> str:
    """The job page's path; a plain path while the jobs pages are not routed."""
    try:
        return job.get_absolute_url()
    except NoReverseMatch:
        return f"/w/{job.workspace.name}/jobs/{job.name}/"
