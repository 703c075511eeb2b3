"""Environments pages: list, detail with the pip lines, and creation."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from studio.models import Environment
from studio.services.assets import create_environment

CONDA = b"""\
name: scoring
channels: [conda-forge]
dependencies:
  - python=3.11
  - pip
  - pip:
      - pandas==3.1.1
      - skops==0.16.0
"""


def url(name: str, *args: object) -> str:
    return reverse(f"studio:{name}", args=["team", *args])


def create(cast, data: dict, who: str = "contributor"):
    return cast.client(who).post(url("environment-create"), data)


def text_of(response) -> str:
    return response.content.decode().replace("&#x27;", "'")


def snapshot() -> tuple[int, list[str]]:
    root = Path(django_settings.STUDIO_DATASTORE)
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    return Environment.objects.count(), paths


@pytest.mark.parametrize(
    ("who", "status"),
    [("owner", 200), ("contributor", 200), ("reader", 200), ("outsider", 404)],
)
def test_it_shows_the_list_and_detail_to_members_only(cast, who, status):
    create_environment(cast.workspace, cast.owner, name="py")
    client = cast.client(who)

    assert client.get(url("environment-list")).status_code == status
    assert client.get(url("environment-detail", "py", 1)).status_code == status


@pytest.mark.parametrize(
    ("who", "get", "post"),
    [
        ("owner", 200, 302),
        ("contributor", 200, 302),
        ("reader", 403, 403),
        ("outsider", 404, 404),
    ],
)
def test_it_lets_only_contributors_and_up_create(cast, who, get, post):
    client = cast.client(who)

    assert client.get(url("environment-create")).status_code == get
    assert create(cast, {"name": "py"}, who).status_code == post
    assert Environment.objects.count() == (1 if post == 302 else 0)


@pytest.mark.parametrize("name", ["environment-list", "environment-create"])
def test_it_sends_anonymous_visitors_to_sign_in(client, cast, name):
    assert client.get(url(name))["Location"].startswith(reverse("login"))


def test_it_stores_requirement_lines_without_comments_or_blanks(cast):
    text = "scikit-learn==1.9.1  # the model's\n\n# tools\nskops==0.16.0\n"

    response = create(cast, {"name": "sk", "python_requirements": text})

    environment = Environment.objects.get()
    assert response["Location"] == url("environment-detail", "sk", 1)
    assert environment.python_requirements == ["scikit-learn==1.9.1", "skops==0.16.0"]
    page = text_of(cast.client("reader").get(url("environment-detail", "sk", 1)))
    assert "scikit-learn==1.9.1\nskops==0.16.0\n" in page


def test_it_reads_the_pip_section_of_a_conda_file(cast):
    conda = SimpleUploadedFile("conda.yaml", CONDA)

    create(cast, {"name": "conda", "python_requirements": "numpy", "conda_file": conda})

    environment = Environment.objects.get()
    assert environment.python_requirements == [
        "numpy",
        "pandas==3.1.1",
        "skops==0.16.0",
    ]
    assert snapshot()[1] == []


def test_it_means_the_worker_python_when_nothing_is_listed(cast):
    create(cast, {"name": "worker"})

    page = text_of(cast.client("reader").get(url("environment-detail", "worker", 1)))
    listing = text_of(cast.client("reader").get(url("environment-list")))

    assert Environment.objects.get().python_requirements == []
    assert "the worker's own Python interpreter" in page
    assert "the worker's Python" in listing


def test_it_numbers_versions_per_name_and_lists_them(cast):
    for line in ("pandas==3.1.0", "pandas==3.1.1"):
        create(cast, {"name": "pd", "python_requirements": line})

    detail = text_of(cast.client("reader").get(url("environment-detail", "pd", 1)))

    assert list(Environment.objects.values_list("version", flat=True)) == [2, 1]
    assert url("environment-detail", "pd", 2) in detail
    assert "pandas==3.1.0" in detail


REFUSALS = {
    "bad name": ({"name": "no spaces"}, "is not a valid name"),
    "requirement file": (
        {"name": "e", "python_requirements": "pandas\n-r other.txt"},
        "'-r other.txt': list the requirements themselves, not a file",
    ),
    "constraint file": (
        {"name": "e", "python_requirements": "--constraint=c.txt"},
        "list the requirements themselves",
    ),
    "bad yaml": (
        {
            "name": "e",
            "conda_file": lambda: SimpleUploadedFile("c.yml", b"dependencies: ["),
        },
        "conda file c.yml is not valid YAML",
    ),
    "pip section not a list": (
        {
            "name": "e",
            "conda_file": lambda: SimpleUploadedFile(
                "c.yml", b"dependencies:\n  - pip: numpy\n"
            ),
        },
        "the pip entry must be a list",
    ),
    "conda file too big": (
        {
            "name": "e",
            "conda_file": lambda: SimpleUploadedFile("c.yml", b"#" * (1024 * 1024 + 1)),
        },
        "the conda file is larger than 1 MB",
    ),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_it_refuses_on_the_form_and_writes_nothing(cast, case):
    raw, message = REFUSALS[case]
    data = {key: value() if callable(value) else value for key, value in raw.items()}
    before = snapshot()

    response = create(cast, data)

    assert response.status_code == 200
    assert message in text_of(response)
    assert snapshot() == before


def test_it_lists_without_a_query_per_row(cast, django_assert_max_num_queries):
    for number in range(12):
        for version in (1, 2):
            Environment.objects.create(
                workspace=cast.workspace, name=f"e{number:02d}", version=version,
                python_requirements=["pandas"], created_by=cast.owner,
            )  # fmt: skip
    client = cast.client("reader")

    with django_assert_max_num_queries(6):
        response = client.get(url("environment-list"))

    assert response.content.decode().count("1 line") == 12


def test_it_pages_the_list_fifty_names_at_a_time(cast):
    Environment.objects.bulk_create(
        Environment(workspace=cast.workspace, name=f"e{n:02d}", version=1)
        for n in range(51)
    )

    second = (
        cast.client("reader").get(url("environment-list") + "?page=2").content.decode()
    )

    assert ">e50</a>" in second and ">e00</a>" not in second
