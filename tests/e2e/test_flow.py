"""The whole flow in a real browser: register, deploy, invoke, follow the job."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from django.conf import settings
from django.urls import reverse
from django_q.conf import Conf
from playwright.sync_api import Page, expect

from studio.models import Job, JobStatus, ModelAsset
from studio.samples import save_sklearn_model, write_feature_csvs
from studio.services.assets import register_model
from studio.services.endpoints import create_deployment, create_endpoint
from studio.tasks import run_job_task
from tests.e2e.conftest import ARTIFACTS, log_in
from tests.factories import zip_of
from tests.studio.conftest import PASSWORD, Cast

pytestmark = pytest.mark.e2e

# The scoring host imports mlflow and sklearn before its first mini-batch.
JOB_TIMEOUT_MS = 60_000
FILES, ROWS = 3, 5


@pytest.fixture(scope="module")
def mlflow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real two-tree MLflow model, trained once for the module."""
    return save_sklearn_model(
        tmp_path_factory.mktemp("mlflow") / "model", n_estimators=2
    )


def field(label: str) -> re.Pattern[str]:
    """A form field's whole label: Django adds a colon after it."""
    return re.compile(rf"^{re.escape(label)}:?$")


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def page_errors(page: Page) -> list[str]:
    """Uncaught script errors of the page, collected as they happen."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def open_area(page: Page, workspace: str, area: str) -> None:
    """From the home page or any workspace page, through the links a user clicks."""
    if not page.get_by_role("navigation", name="Workspace").count():
        page.get_by_role("link", name=workspace, exact=True).click()
    nav = page.get_by_role("navigation", name="Workspace")
    nav.get_by_role("link", name=area, exact=True).click()


@pytest.mark.slow
def test_it_registers_deploys_invokes_and_follows_a_job(
    owner_page: Page,
    cast: Cast,
    mlflow_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    page = owner_page
    errors = page_errors(page)
    ws = cast.workspace.name

    # Register the model: one zip of its folder on the register form.
    open_area(page, ws, "Models")
    page.get_by_role("link", name="Register model").click()
    page.get_by_label(field("Name")).fill("clf")
    page.get_by_label(field("Files")).set_input_files(
        write_zip(mlflow_model, tmp_path / "model.zip")
    )
    page.get_by_role("button", name="Register", exact=True).click()

    expect(page.get_by_role("heading", level=1)).to_have_text("clf version 1")
    expect(page.get_by_text("Registered clf:1.")).to_be_visible()
    expect(page.get_by_text("MLflow model", exact=True)).to_be_visible()

    # A batch endpoint.
    open_area(page, ws, "Endpoints")
    page.get_by_role("link", name="New endpoint").click()
    page.get_by_label(field("Name")).fill("scorer")
    page.get_by_role("button", name="Create endpoint").click()

    expect(page.get_by_role("heading", level=1)).to_contain_text("scorer")
    expect(page.get_by_text("No deployments yet.")).to_be_visible()

    # A no-code deployment of the MLflow model: one file per mini-batch.
    page.get_by_role("link", name="New deployment").click()
    page.get_by_label(field("Name")).fill("blue")
    page.get_by_label(field("Model")).select_option("clf:1")
    page.get_by_label(field("mini_batch_size")).fill("1")
    page.get_by_label(field("resource_monitor_interval")).fill("0")
    page.get_by_role("button", name="Save revision").click()

    expect(page.get_by_role("heading", level=1)).to_contain_text("blue revision 1")
    expect(page.get_by_text("none: the built-in MLflow scorer")).to_be_visible()

    # Invoke it on three uploaded CSV files. The job is only queued, so that the
    # page is seen following it while this thread plays the worker.
    page.get_by_role("link", name="scorer", exact=True).click()
    expect(page.get_by_role("heading", name="blue default")).to_be_visible()
    page.get_by_role("link", name="Invoke", exact=True).click()
    inputs = write_feature_csvs(tmp_path / "features", FILES, ROWS)
    page.get_by_label(field("or upload files")).set_input_files(inputs)
    monkeypatch.setattr(Conf, "SYNC", False)  # enqueued, not run
    page.get_by_role("button", name="Invoke", exact=True).click()

    job_url = re.escape(reverse("studio:job-list", args=[ws])) + r"[\w-]+/$"
    expect(page).to_have_url(re.compile(job_url))
    status = page.locator("[data-field=status] .status")
    expect(status).to_have_text("queued")
    job = Job.objects.get()
    expect(page.get_by_text(f"Job {job.name} is queued.")).to_be_visible()
    expect(page.locator("#job")).to_have_attribute(
        "data-job-status-url", reverse("studio:job-status", args=[ws, job.name])
    )

    # The worker runs it; the page polls its status and shows the end state.
    run_job_task(job.pk)
    expect(status).to_have_text("completed", timeout=JOB_TIMEOUT_MS)
    # ...then renders itself again, final, and stops polling.
    expect(page.locator("#job")).not_to_have_attribute(
        "data-job-status-url", re.compile(".*"), timeout=JOB_TIMEOUT_MS
    )
    counts = page.locator("table.job-counts")
    expect(counts.locator("[data-count=mini_batches_succeeded]")).to_have_text(
        str(FILES)
    )
    expect(counts.locator("[data-count=mini_batches_failed]")).to_have_text("0")
    expect(counts.locator("[data-count=mini_batches_total]")).to_have_text(str(FILES))
    expect(counts.locator("[data-count=items_succeeded]")).to_have_text(str(FILES))
    expect(counts.locator("[data-count=items_failed]")).to_have_text("0")
    expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "test_flow_finished_job.png", full_page=True)

    job.refresh_from_db()
    assert page.url.endswith(reverse("studio:job-detail", args=[ws, job.name]))
    assert job.status == JobStatus.COMPLETED, job.error
    assert job.input == {"uploads": FILES}
    output = pd.read_csv(Path(job.job_dir, "outputs", "predictions.csv"))
    assert len(output) == FILES * ROWS
    assert list(output["file_name"].unique()) == [p.name for p in inputs]
    assert errors == []


def test_it_registers_a_model_folder_uploaded_from_the_browser(
    owner_page: Page, cast: Cast, mlflow_model: Path
):
    page = owner_page
    page.goto(reverse("studio:model-register", args=[cast.workspace.name]))
    page.get_by_label(field("Name")).fill("clf-folder")
    page.get_by_label(field("Folder")).set_input_files(mlflow_model)
    page.get_by_role("button", name="Register", exact=True).click()

    expect(page.get_by_role("heading", level=1)).to_have_text("clf-folder version 1")
    expect(page.get_by_text("MLflow model", exact=True)).to_be_visible()
    model = ModelAsset.objects.get()
    assert model.type == ModelAsset.Type.MLFLOW
    assert files_under(Path(model.path)) == files_under(mlflow_model)


def test_a_reader_sees_the_endpoint_but_cannot_invoke_it(
    page: Page, cast: Cast, mlflow_model: Path
):
    server = Path(settings.STUDIO_ALLOWED_ROOTS[0])
    model_dir = shutil.copytree(mlflow_model, server / "model")
    register_model(cast.workspace, cast.owner, name="clf", server_path=str(model_dir))
    endpoint = create_endpoint(cast.workspace, cast.owner, name="scorer")
    create_deployment(endpoint, cast.owner, name="blue", model="clf:1")
    log_in(page, cast.reader.username, PASSWORD)

    page.goto(endpoint.get_absolute_url())

    expect(page.get_by_role("heading", level=1)).to_contain_text("scorer")
    expect(page.get_by_role("heading", name="blue")).to_be_visible()
    for name in ("Invoke", "New deployment", "Update (new revision)"):
        expect(page.get_by_role("link", name=name)).to_have_count(0)
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)
    invoke_url = reverse("studio:endpoint-invoke", args=[cast.workspace.name, "scorer"])
    response = page.goto(invoke_url)
    assert response is not None and response.status == 403
    assert Job.objects.count() == 0


def write_zip(folder: Path, archive: Path) -> Path:
    archive.write_bytes(zip_of(folder, folder.name))
    return archive
