"""Properties of invoke: one queued job, or a ValidationError and nothing created.

Whatever the browser, the API or the CLI passes as invocation parameters,
`invoke` either creates exactly one queued job (its task enqueued on commit)
or refuses with a ValidationError (DESIGN section 5) - never another
exception, which a user would see as a 500 - and a refusal leaves no job row
and no file or folder behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from scoring_engine.config import OVERRIDABLE, build_settings
from studio import storage
from studio.models import DataAsset, Job, JobStatus
from studio.services.invoke import JOB_NAME_RE, RESERVED_AREAS, invoke

from .test_endpoints_deployments import (
    make_data,
    make_endpoint,
    make_script_deployment,
)

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Values on the edges of the rules: paths that escape, reserved areas, names
# just inside and outside the limits, unicode, NUL and lone surrogates.
EDGE_TEXT = [
    "", " ", ".", "..", "../x", "a/../../b", "a/./b", "/", "/etc", "/tmp/x", "\\",
    "a\\..\\b", "./a", "~/x", "C:\\x", "%2e%2e/x", "jobs", "jobs/x", "models/x",
    "data", ".staging/x", "inputs/x", "code", "team/x", "outputs/run-1", "a/b/c",
    "x" * 255, "x" * 256, "é" * 128, "a" * 5000, "ab", "abc", "Ab9",
    "-abc", "_abc", "x" * 64, "x" * 65, "run 1", "ok-name", "run_2", "\n", "\t",
    "ü-run", "名前-run", "emoji-😀",
]  # fmt: skip
BAD_CODE_POINTS = ["\x00", "a\x00b", "\ud800", "out/\udcff"]
PLAIN_TEXT = st.text(max_size=40) | st.sampled_from(EDGE_TEXT)
ANY_TEXT = PLAIN_TEXT | st.sampled_from(BAD_CODE_POINTS)
DATA_ASSETS = st.sampled_from(
    [
        "inputs:1", "inputs@latest", "inputs", "azureml:inputs:1", " inputs:1 ",
        "remote:1", "gone@latest", "inputs:2", "inputs:x", "inputs@v1", "inptus",
        "https://example.org/x", "inputs:1:1", "@latest", ":1",
    ]
)  # fmt: skip
URLS = st.sampled_from(
    [
        "https://example.org/data.csv", "http://example.org", "https://",
        "ftp://example.org/x", "https://a b", "http:/x", "file:///etc/passwd",
        "HTTPS://EXAMPLE.ORG/X",
    ]
)  # fmt: skip
OVERRIDE_VALUES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-3, max_value=10**6)
    | st.floats()
    | st.sampled_from(["1", "5", "0", "-1", "debug", "10MB", "summary_only", "o.csv"])
)


# Accepted values, so that about half the examples get past validation.
GOOD_OVERRIDES = st.fixed_dictionaries(
    {},
    optional={
        "mini_batch_size": st.sampled_from([1, "5", " 3 ", "10MB"]),
        "instance_count": st.sampled_from([1, "2"]),
        "max_concurrency_per_instance": st.sampled_from([1, 2]),
        "timeout": st.sampled_from([5, "0.5", 30.0]),
        "retry_settings.max_retries": st.sampled_from([0, "2"]),
        "error_threshold": st.sampled_from([-1, "3"]),
        "logging_level": st.sampled_from(["debug", "WARNING"]),
        "output_file_name": st.sampled_from(["scores.csv", "out put.csv", "é.csv"]),
        "output_action": st.sampled_from(["summary_only", "append_row"]),
    },
)
GOOD_OUTPUT_PATHS = st.from_regex(
    r"[a-z]{1,8}(/[a-z0-9_.-]{1,12}){0,3}", fullmatch=True
)


def parameters(text: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Invocation parameters, each absent, plausible or arbitrary; the input is
    most often one registered data asset or one URL, as a valid call has."""
    return st.fixed_dictionaries(
        {
            "data_asset": st.one_of(
                st.just("inputs:1"), st.just("inputs@latest"), DATA_ASSETS, text
            )
        },
        optional={
            "deployment_name": st.one_of(
                st.just("blue"), st.just(""), st.sampled_from(["green", "nope"]), text
            ),
            "url": st.just("") | URLS | text,
            "output_path": GOOD_OUTPUT_PATHS | text,
            "job_name": st.from_regex(JOB_NAME_RE, fullmatch=True) | text,
            "overrides": GOOD_OVERRIDES
            | st.dictionaries(
                st.sampled_from(sorted(OVERRIDABLE)) | text,
                OVERRIDE_VALUES | text,
                max_size=3,
            ),
            "tags": st.dictionaries(text, text, max_size=3),
        },
    ).map(_maybe_url_only)


def _maybe_url_only(params: dict[str, Any]) -> dict[str, Any]:
    """Half the examples that carry a URL carry it alone, as a valid call does."""
    if params.get("url") and len(params["url"]) % 2:
        params["data_asset"] = ""
    return params


@pytest.fixture
def endpoint(cast):
    """Endpoint `scorer` running ok.py; data assets: present, remote and gone."""
    endpoint = make_endpoint(cast.workspace, cast.owner)
    make_script_deployment(endpoint, cast.owner)
    make_data(cast.workspace)
    gone = make_data(cast.workspace, name="gone")
    for path in Path(gone.path).iterdir():
        path.unlink()
    Path(gone.path).rmdir()
    DataAsset.objects.create(
        workspace=cast.workspace,
        name="remote",
        version=1,
        type=DataAsset.Type.FILE,
        path="https://example.org/data/file.csv",
    )
    return endpoint


def datastore_tree() -> set[Path]:
    return set(Path(django_settings.STUDIO_DATASTORE).rglob("*"))


def assert_fits_its_columns(job: Job) -> None:
    """SQLite ignores max_length; PostgreSQL would refuse the row with a 500."""
    for field in Job._meta.concrete_fields:
        if isinstance(field, models.CharField) and field.max_length:
            value = getattr(job, field.attname)
            assert len(value) <= field.max_length, (field.name, value)


def invoke_once_or_refuse(
    endpoint, user, params: dict[str, Any]
) -> Job | ValidationError:
    """Invoke in a savepoint rolled back afterwards, so examples stay independent."""
    before_tree, before_jobs = datastore_tree(), Job.objects.count()
    with transaction.atomic():
        callbacks = len(connection.run_on_commit)
        try:
            job = invoke(endpoint, user, **params)
        except ValidationError as exc:
            assert exc.messages and all(exc.messages)
            assert Job.objects.count() == before_jobs
            assert datastore_tree() == before_tree
            transaction.set_rollback(True)
            return exc
        try:
            assert Job.objects.count() == before_jobs + 1
            assert len(connection.run_on_commit) == callbacks + 1  # enqueued once
            job.refresh_from_db()
            assert job.status == JobStatus.QUEUED
            assert JOB_NAME_RE.fullmatch(job.name)
            assert job.tags == dict(params.get("tags") or {})
            assert build_settings(job.settings).as_dict() == job.settings
            assert_fits_its_columns(job)
            job_dir = Path(job.job_dir)
            datastore = Path(django_settings.STUDIO_DATASTORE) / "team"
            assert job_dir.is_dir() and not any(job_dir.iterdir())
            assert job_dir.resolve().is_relative_to(datastore.resolve())
            new = datastore_tree() - before_tree
            assert all(job_dir.is_relative_to(path) for path in new), new
        finally:
            storage.discard(Path(job.job_dir))
            transaction.set_rollback(True)
    assert datastore_tree() == before_tree
    return job


def check_invocation(endpoint, user, params: dict[str, Any], twice: bool) -> None:
    """One invocation holds the property; `twice`: the same one again is refused."""
    outcome = invoke_once_or_refuse(endpoint, user, params)
    if isinstance(outcome, Job):
        event("created a job")
    else:
        fields = getattr(outcome, "error_dict", {"(no field)": None})
        event(f"refused: {', '.join(sorted(fields))}")
    if not (twice and isinstance(outcome, Job)):
        return
    if not (params.get("job_name") or params.get("output_path")):
        return
    # The same job name or output location again: refused, nothing overwritten.
    with transaction.atomic():
        first = invoke(endpoint, user, **params)
        try:
            again = invoke_once_or_refuse(endpoint, user, params)
        finally:
            storage.discard(Path(first.job_dir))
            transaction.set_rollback(True)
    assert isinstance(again, ValidationError)
    assert "already exists" in " ".join(again.messages)


@PROPERTY
@given(params=parameters(PLAIN_TEXT), twice=st.booleans())
@example(params={"data_asset": "inputs:1"}, twice=True)
@example(params={"data_asset": "inputs:1", "job_name": "run-1"}, twice=True)
@example(params={"url": "https://example.org/x", "output_path": "out/a"}, twice=True)
@example(params={"data_asset": "remote:1", "overrides": {"timeout": "5"}}, twice=False)
@example(params={"data_asset": "gone:1"}, twice=False)
@example(params={"data_asset": "inputs:1", "output_path": "x" * 256}, twice=False)
@example(params={"data_asset": "inputs:1", "output_path": "jobs/x/.."}, twice=False)
@example(params={"data_asset": "inputs:1", "overrides": {5: 1}}, twice=False)
@example(params={"data_asset": "inputs:1", "tags": {"a": "b" * 5000}}, twice=False)
def test_invoke_creates_one_queued_job_or_refuses_leaving_nothing(
    endpoint, cast, params, twice
):
    check_invocation(endpoint, cast.contributor, params, twice)


# Each example below once escaped invoke() as a 500 (NUL, lone surrogates) or
# made a job_dir longer than Job.job_dir holds.
@PROPERTY
@given(params=parameters(ANY_TEXT | st.just("a/" * 1100)), twice=st.booleans())
@example(params={"data_asset": "inputs:1", "output_path": "a\x00b"}, twice=False)
@example(params={"data_asset": "inputs:1", "output_path": "out/\udcff"}, twice=False)
@example(params={"data_asset": "inputs:1", "deployment_name": "\ud800"}, twice=False)
@example(params={"data_asset": "\ud800"}, twice=False)
@example(params={"data_asset": "inputs:1", "output_path": "a/" * 1100}, twice=False)
def test_invoke_refuses_any_text_cleanly_even_nul_and_surrogates(
    endpoint, cast, params, twice
):
    check_invocation(endpoint, cast.contributor, params, twice)


@PROPERTY
@given(
    first=st.just("")
    | st.from_regex(r"[a-z]{1,8}(/[a-z0-9_-]{1,12}){0,3}", fullmatch=True).filter(
        lambda path: path.split("/")[0] not in RESERVED_AREAS
    ),
    inside=GOOD_OUTPUT_PATHS,
)
@example(first="", inside="outputs")
@example(first="results/a", inside="b")
def test_a_job_folder_never_lies_inside_another_jobs_folder(
    endpoint, cast, first, inside
):
    datastore = Path(django_settings.STUDIO_DATASTORE) / "team"
    with transaction.atomic():
        other = invoke(endpoint, cast.owner, data_asset="inputs:1", output_path=first)
        try:
            nested = Path(other.job_dir).relative_to(datastore) / inside
            with pytest.raises(ValidationError):
                invoke(
                    endpoint,
                    cast.contributor,
                    data_asset="inputs:1",
                    output_path=nested.as_posix(),
                )
        finally:
            shutil.rmtree(other.job_dir)
            storage.discard(Path(other.job_dir))
            transaction.set_rollback(True)
