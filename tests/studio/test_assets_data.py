"""Data pages: list, detail with a bounded preview, and registration."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from studio.models import DataAsset
from studio.samples import write_feature_csvs
from studio.services.assets import register_data


def url(name: str, *args: object) -> str:
    return reverse(f"studio:{name}", args=["team", *args])


def snapshot() -> tuple[int, list[str]]:
    root = Path(django_settings.STUDIO_DATASTORE)
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    return DataAsset.objects.count(), paths


def post_register(cast, data: dict, who: str = "contributor"):
    return cast.client(who).post(url("data-register"), data)


def csv_upload(name: str = "rows.csv", rows: int = 100) -> SimpleUploadedFile:
    text = "a,b\n" + "".join(f"{i},{i * 2}\n" for i in range(rows))
    return SimpleUploadedFile(name, text.encode())


def text_of(response) -> str:
    return response.content.decode().replace("&#x27;", "'")


@pytest.fixture
def registered(cast) -> DataAsset:
    return register_data(
        cast.workspace, cast.owner, name="inputs", data_type="uri_folder",
        url="https://example.org/data/",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("who", "status"),
    [("owner", 200), ("contributor", 200), ("reader", 200), ("outsider", 404)],
)
def test_it_shows_the_list_and_detail_to_members_only(cast, registered, who, status):
    client = cast.client(who)

    assert client.get(url("data-list")).status_code == status
    assert client.get(url("data-detail", "inputs", 1)).status_code == status


@pytest.mark.parametrize(
    ("who", "get", "post"),
    [
        ("owner", 200, 302),
        ("contributor", 200, 302),
        ("reader", 403, 403),
        ("outsider", 404, 404),
    ],
)
def test_it_lets_only_contributors_and_up_register(cast, who, get, post):
    client = cast.client(who)
    data = {"name": "d", "type": "uri_folder", "url": "https://example.org/x.csv"}

    assert client.get(url("data-register")).status_code == get
    assert client.post(url("data-register"), data).status_code == post
    assert DataAsset.objects.count() == (1 if post == 302 else 0)


@pytest.mark.parametrize("name", ["data-list", "data-register"])
def test_it_sends_anonymous_visitors_to_sign_in(client, cast, name):
    assert client.get(url(name))["Location"].startswith(reverse("login"))


def test_it_registers_one_uploaded_file_and_previews_its_first_rows(cast):
    response = post_register(
        cast, {"name": "rows", "type": "uri_file", "files": csv_upload()}
    )

    asset = DataAsset.objects.get()
    assert response["Location"] == url("data-detail", "rows", 1)
    assert asset.path == str(
        Path(django_settings.STUDIO_DATASTORE) / "team/data/rows/1/rows.csv"
    )
    page = text_of(cast.client("reader").get(url("data-detail", "rows", 1)))
    assert "<th>a</th><th>b</th>" in page
    assert "<td>19</td><td>38</td>" in page and "<tr><td>20</td>" not in page
    assert "More rows are not shown" in page


def test_it_registers_a_zip_as_a_folder_and_lists_its_files(cast):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("batch/part-1.csv", "a\n1\n")
        archive.writestr("batch/sub/part-2.csv", "a\n2\n")

    post_register(
        cast,
        {
            "name": "batch",
            "type": "uri_folder",
            "files": SimpleUploadedFile("b.zip", buffer.getvalue()),
        },
    )

    asset = DataAsset.objects.get()
    assert (Path(asset.path) / "batch" / "sub" / "part-2.csv").is_file()
    page = text_of(cast.client("reader").get(url("data-detail", "batch", 1)))
    assert "<code>batch/sub/part-2.csv</code>" in page


def test_it_keeps_the_layout_of_a_folder_upload(cast):
    folder = [
        SimpleUploadedFile("a.csv", b"a\n1\n"),
        SimpleUploadedFile("b.csv", b"a\n2\n"),
    ]
    paths = ["inputs/a.csv", "inputs/day2/b.csv"]

    post_register(
        cast,
        {
            "name": "inputs",
            "type": "uri_folder",
            "folder": folder,
            "relative_paths": json.dumps(paths),
        },
    )

    asset = DataAsset.objects.get()
    assert (Path(asset.path) / "inputs" / "day2" / "b.csv").read_text() == "a\n2\n"


def test_it_stores_a_url_to_fetch_when_a_job_runs(cast):
    post_register(
        cast, {"name": "web", "type": "uri_file", "url": "https://example.org/a.csv"}
    )

    asset = DataAsset.objects.get()
    assert (asset.path, asset.is_url) == ("https://example.org/a.csv", True)
    page = text_of(cast.client("reader").get(url("data-detail", "web", 1)))
    assert "fetched when a job runs" in page
    assert snapshot()[1] == []


def test_it_registers_a_server_file_in_place_and_previews_it(cast, tmp_path):
    write_feature_csvs(tmp_path / "server" / "features", n_files=1, rows=50)
    path = tmp_path / "server" / "features" / "file_00000.csv"

    post_register(
        cast, {"name": "features", "type": "uri_file", "server_path": str(path)}
    )

    asset = DataAsset.objects.get()
    assert asset.path == str(path)
    page = text_of(cast.client("reader").get(url("data-detail", "features", 1)))
    assert "<th>f0</th><th>f1</th><th>f2</th><th>f3</th>" in page
    assert snapshot()[1] == []


def test_it_previews_a_parquet_file(cast, tmp_path):
    path = tmp_path / "server" / "rows.parquet"
    pd.DataFrame({"f0": range(30), "label": ["x"] * 30}).to_parquet(path)

    post_register(cast, {"name": "pq", "type": "uri_file", "server_path": str(path)})

    page = text_of(cast.client("reader").get(url("data-detail", "pq", 1)))
    assert "<th>f0</th><th>label</th>" in page
    assert "30 rows" in page and "<td>19</td>" in page and "<td>20</td>" not in page


def test_it_says_why_a_file_cannot_be_previewed(cast, tmp_path):
    (tmp_path / "server" / "fake.parquet").write_text("not parquet")
    post_register(
        cast,
        {
            "name": "fake",
            "type": "uri_file",
            "server_path": str(tmp_path / "server" / "fake.parquet"),
        },
    )

    page = text_of(cast.client("reader").get(url("data-detail", "fake", 1)))

    assert "No preview: not a readable Parquet file" in page


def test_it_lists_only_the_first_fifty_entries_of_a_big_folder(cast, tmp_path):
    write_feature_csvs(tmp_path / "server" / "many", n_files=60, rows=1)

    post_register(
        cast,
        {
            "name": "many",
            "type": "uri_folder",
            "server_path": str(tmp_path / "server" / "many"),
        },
    )

    page = text_of(cast.client("reader").get(url("data-detail", "many", 1)))
    assert page.count("<code>file_000") == 50
    assert "Showing the first 50 entries only" in page


def test_it_shows_no_preview_once_a_path_leaves_the_allowed_roots(
    cast, settings, tmp_path
):
    (tmp_path / "server" / "rows.csv").write_text("a\n1\n")
    post_register(
        cast,
        {
            "name": "rows",
            "type": "uri_file",
            "server_path": str(tmp_path / "server" / "rows.csv"),
        },
    )
    settings.STUDIO_ALLOWED_ROOTS = [tmp_path / "other-root"]

    page = text_of(cast.client("reader").get(url("data-detail", "rows", 1)))

    assert "The files cannot be read here" in page and "<th>a</th>" not in page


def test_it_numbers_versions_per_name(cast):
    for _ in range(2):
        post_register(
            cast,
            {"name": "web", "type": "uri_file", "url": "https://example.org/a.csv"},
        )

    page = text_of(cast.client("reader").get(url("data-list")))

    assert list(DataAsset.objects.values_list("version", flat=True)) == [2, 1]
    assert f'href="{url("data-detail", "web", 2)}">web</a>' in page


REFUSALS = {
    "no source": ({"name": "d", "type": "uri_folder"}, "give exactly one source"),
    "two sources": (
        {
            "name": "d",
            "type": "uri_file",
            "url": "https://example.org/a",
            "files": csv_upload,
        },
        "give exactly one source",
    ),
    "two files for uri_file": (
        {
            "name": "d",
            "type": "uri_file",
            "files": lambda: [csv_upload("a.csv"), csv_upload("b.csv")],
        },
        "a uri_file data asset is exactly one file",
    ),
    "bad type": (
        {"name": "d", "type": "table", "url": "https://x.org"},
        "Select a valid choice",
    ),
    "bad name": (
        {"name": "../d", "type": "uri_file", "url": "https://x.org"},
        "is not a valid name",
    ),
    "ftp url": (
        {"name": "d", "type": "uri_file", "url": "ftp://x.org/a"},
        "is not an http or https URL",
    ),
    "hostless url": (
        {"name": "d", "type": "uri_file", "url": "https://"},
        "is not an http or https URL",
    ),
    "broken url": (
        {"name": "d", "type": "uri_file", "url": "http://[::1/a"},
        "is not an http",
    ),
    "url with password": (
        {"name": "d", "type": "uri_file", "url": "https://me:secret@x.org/a"},
        "must not hold a user name or password",
    ),
    "too big": (
        {
            "name": "d",
            "type": "uri_file",
            "files": lambda: SimpleUploadedFile("b.bin", bytes(1024 * 1024 + 1)),
        },
        "larger than STUDIO_MAX_UPLOAD_MB (1 MB)",
    ),
    "folder slip": (
        {
            "name": "d",
            "type": "uri_folder",
            "folder": lambda: [SimpleUploadedFile("x.csv", b"a")],
            "relative_paths": json.dumps(["/etc/cron.d/x.csv"]),
        },
        "not a safe file name",
    ),
    "outside roots": (
        {"name": "d", "type": "uri_folder", "server_path": "/etc"},
        "outside the allowed roots",
    ),
    "symlink escape": (
        {"name": "d", "type": "uri_folder", "server_path": "{server}/escape"},
        "outside the allowed roots",
    ),
    "file as folder": (
        {"name": "d", "type": "uri_folder", "server_path": "{server}/one.csv"},
        "is not a folder; use uri_file",
    ),
    "folder as file": (
        {"name": "d", "type": "uri_file", "server_path": "{server}"},
        "is not a file; use uri_folder",
    ),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_it_refuses_on_the_form_and_writes_nothing(cast, settings, tmp_path, case):
    settings.STUDIO_MAX_UPLOAD_MB = 1
    server = tmp_path / "server"
    (tmp_path / "elsewhere").mkdir()
    (server / "escape").symlink_to(tmp_path / "elsewhere")
    (server / "one.csv").write_text("a\n1\n")
    raw, message = REFUSALS[case]
    data = {
        key: value() if callable(value) else value.replace("{server}", str(server))
        for key, value in raw.items()
    }
    before = snapshot()

    response = post_register(cast, data)

    assert response.status_code == 200
    assert message in text_of(response)
    assert snapshot() == before


def test_it_lists_without_a_query_per_row(cast, django_assert_max_num_queries):
    for number in range(12):
        for version in (1, 2):
            DataAsset.objects.create(
                workspace=cast.workspace, name=f"d{number:02d}", version=version,
                type="uri_file", path="https://example.org/a", created_by=cast.owner,
            )  # fmt: skip
    client = cast.client("reader")

    with django_assert_max_num_queries(6):
        response = client.get(url("data-list"))

    assert response.content.decode().count("<td>2</td>\n          <td>2</td>") == 12


def test_it_pages_the_list_fifty_names_at_a_time(cast):
    DataAsset.objects.bulk_create(
        DataAsset(
            workspace=cast.workspace,
            name=f"d{n:02d}",
            version=1,
            type="uri_file",
            path="https://example.org/a",
        )  # fmt: skip
        for n in range(51)
    )

    second = cast.client("reader").get(url("data-list") + "?page=2").content.decode()

    assert ">d50</a>" in second and ">d00</a>" not in second
