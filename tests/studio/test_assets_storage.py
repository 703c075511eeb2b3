"""Datastore helpers: safe uploads and unzips, server paths, bounded reads."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from studio import storage


def upload(name: str, content: bytes = b"x") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content)


def zip_upload(
    entries: dict[str, bytes], name: str = "archive.zip"
) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry, content in entries.items():
            archive.writestr(entry, content)
    return upload(name, buffer.getvalue())


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.fixture
def target(tmp_path: Path) -> Path:
    folder = tmp_path / "target"
    folder.mkdir()
    return folder


def test_it_keeps_a_folder_layout_from_relative_names(target):
    files = [upload("MLmodel"), upload("helper.py")]

    written = storage.save_uploads(
        files, target, names=["m/MLmodel", "m/code/helper.py"]
    )

    assert written == 2
    assert files_under(target) == ["m", "m/MLmodel", "m/code", "m/code/helper.py"]


@pytest.mark.parametrize(
    "name",
    [
        "../evil.py",
        "/etc/passwd",
        "a/../../evil",
        "..\\evil",
        "a\nb",
        "",
        ".",
        "x" * 300,
    ],
)
def test_it_refuses_unsafe_names_before_writing_anything(target, name):
    files = [upload("ok.txt"), upload("evil")]

    with pytest.raises(ValidationError, match="not a safe file name"):
        storage.save_uploads(files, target, names=["ok.txt", name])

    assert files_under(target) == []


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["a.txt", "a.txt"], "two files are named 'a.txt'"),
        (["a", "a/b.txt"], "'a' is both a file and a folder"),
    ],
)
def test_it_refuses_clashing_names(target, names, message):
    with pytest.raises(ValidationError, match=message):
        storage.save_uploads([upload("a"), upload("b")], target, names=names)

    assert files_under(target) == []


def test_it_refuses_uploads_over_the_limit(settings, target):
    settings.STUDIO_MAX_UPLOAD_MB = 1

    with pytest.raises(
        ValidationError, match=r"larger than STUDIO_MAX_UPLOAD_MB \(1 MB"
    ):
        storage.save_uploads([upload("big.bin", b"0" * (1024 * 1024 + 1))], target)

    assert files_under(target) == []


def test_it_unpacks_a_lone_zip(target):
    archive = zip_upload({"model/MLmodel": b"flavors: {}", "model/data/x.bin": b"1"})

    assert storage.save_uploads([archive], target) == 2
    assert storage.single_top_folder(target) == target / "model"
    assert (target / "model" / "data" / "x.bin").read_bytes() == b"1"


def test_it_stores_a_zip_as_is_when_told_not_to_unpack(target):
    storage.save_uploads([zip_upload({"a.txt": b"a"})], target, unzip=False)

    assert files_under(target) == ["archive.zip"]


@pytest.mark.parametrize("entry", ["../evil.py", "/abs/evil.py", "ok/../../evil.py"])
def test_it_refuses_zip_entries_that_leave_the_folder(target, entry):
    archive = zip_upload({"ok.txt": b"fine", entry: b"evil"})

    with pytest.raises(ValidationError, match="not a safe file name"):
        storage.save_uploads([archive], target)

    assert files_under(target) == []


def test_it_refuses_a_zip_holding_a_symbolic_link(target):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo("model/passwd")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")

    with pytest.raises(ValidationError, match="symbolic link"):
        storage.save_uploads([upload("m.zip", buffer.getvalue())], target)

    assert files_under(target) == []


def test_it_refuses_a_zip_that_unpacks_beyond_the_limit(settings, target):
    settings.STUDIO_MAX_UPLOAD_MB = 1
    archive = zip_upload({"zeros.bin": bytes(2 * 1024 * 1024)})
    assert archive.size < 1024 * 1024

    with pytest.raises(ValidationError, match="more than STUDIO_MAX_UPLOAD_MB"):
        storage.save_uploads([archive], target)

    assert files_under(target) == []


def test_it_refuses_a_zip_bomb_by_its_ratio(target):
    archive = zip_upload({"zeros.bin": bytes(storage.RATIO_FLOOR + 1)})

    with pytest.raises(ValidationError, match="zip bomb"):
        storage.save_uploads([archive], target)

    assert files_under(target) == []


def test_it_refuses_a_zip_with_too_many_entries(monkeypatch, target):
    monkeypatch.setattr(storage, "MAX_ZIP_ENTRIES", 3)
    archive = zip_upload({f"f{i}.txt": b"x" for i in range(4)})

    with pytest.raises(ValidationError, match="holds 4 entries; at most 3"):
        storage.save_uploads([archive], target)


def test_it_refuses_a_file_that_is_not_a_zip(target):
    with pytest.raises(ValidationError, match="not a valid zip archive"):
        storage.save_uploads([upload("model.zip", b"not a zip")], target)


def test_it_confines_server_paths_to_the_allowed_roots(tmp_path):
    inside = tmp_path / "server" / "data.csv"
    inside.write_text("a\n1\n")

    assert storage.confine_server_path(str(inside)) == inside.resolve()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: str(tmp / "elsewhere"), "outside the allowed roots"),
        (lambda tmp: str(tmp / "server" / ".." / "elsewhere"), "outside the allowed"),
        (lambda tmp: "server/data.csv", "must be an absolute server path"),
        (lambda tmp: str(tmp / "server" / "missing"), "does not exist"),
        (lambda tmp: str(tmp / "server" / "escape"), "outside the allowed roots"),
        (
            lambda tmp: str(tmp / "server" / "datastore"),
            "inside the studio's datastore",
        ),
        (lambda tmp: str(tmp / "server" / "fifo"), "neither a regular file nor"),
    ],
)
def test_it_refuses_server_paths_it_must_not_read(settings, tmp_path, make, message):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "server" / "escape").symlink_to(tmp_path / "elsewhere")
    settings.STUDIO_DATASTORE = tmp_path / "server" / "datastore"
    settings.STUDIO_DATASTORE.mkdir()
    os.mkfifo(tmp_path / "server" / "fifo")

    with pytest.raises(ValidationError, match=message) as refused:
        storage.confine_server_path(make(tmp_path), "server_path")

    assert list(refused.value.error_dict) == ["server_path"]


def test_it_refuses_server_paths_when_no_root_is_configured(settings, tmp_path):
    settings.STUDIO_ALLOWED_ROOTS = []

    with pytest.raises(ValidationError, match="server paths are turned off"):
        storage.confine_server_path(str(tmp_path / "server"))


def test_it_lists_a_big_folder_in_bounded_slices_without_following_links(tmp_path):
    folder = tmp_path / "server" / "many"
    folder.mkdir()
    for number in range(120):
        (folder / f"file_{number:03d}.csv").write_text("a\n")
    (tmp_path / "server" / "small").mkdir()
    (tmp_path / "server" / "small" / "x.txt").write_text("hello")
    (tmp_path / "server" / "small" / "link").symlink_to("/etc")

    entries, more = storage.list_files(folder, 50)
    small, small_more = storage.list_files(tmp_path / "server" / "small", 50)

    assert (len(entries), more) == (50, True)
    assert small == [
        storage.FileEntry("link", None, "link"),
        storage.FileEntry("x.txt", 5, "file"),
    ]
    assert small_more is False


def test_it_reads_only_the_head_of_a_file(tmp_path):
    path = tmp_path / "server" / "big.txt"
    path.write_bytes(b"x" * 1000)

    assert storage.read_head(path, 100) == (b"x" * 100, True)
    assert storage.read_head(path, 1000) == (b"x" * 1000, False)


def test_it_does_not_open_links_or_fifos_as_files(tmp_path):
    (tmp_path / "server" / "link").symlink_to(tmp_path / "server")
    os.mkfifo(tmp_path / "server" / "fifo")

    for name in ("link", "fifo"):
        with pytest.raises(OSError):
            storage.read_head(tmp_path / "server" / name, 10)


def test_it_previews_the_first_rows_of_a_csv(tmp_path):
    path = tmp_path / "server" / "rows.csv"
    path.write_text("a,b\n" + "".join(f"{i},{i * 2}\n" for i in range(10_000)))

    table = storage.preview_table(path, max_bytes=1024, max_rows=20, max_columns=30)

    assert table.columns == ["a", "b"]
    assert table.rows[:2] == [["0", "0"], ["1", "2"]]
    assert (len(table.rows), table.more) == (20, True)


def test_it_drops_a_line_cut_by_the_byte_limit(tmp_path):
    path = tmp_path / "server" / "rows.tsv"
    path.write_text("a\tb\n1\t2\n3\t4444444\n")

    table = storage.preview_table(path, max_bytes=14, max_rows=20, max_columns=30)

    assert (table.columns, table.rows, table.more) == (["a", "b"], [["1", "2"]], True)


def test_it_reads_quoted_newlines_and_a_byte_order_mark(tmp_path):
    path = tmp_path / "server" / "excel.csv"
    path.write_bytes('\ufeffa,b\n"two\nlines",2\n'.encode())

    table = storage.preview_table(path, max_bytes=1024, max_rows=20, max_columns=30)

    assert (table.columns, table.rows, table.more) == (
        ["a", "b"],
        [["two\nlines", "2"]],
        False,
    )


def test_it_previews_the_first_rows_of_a_parquet_file(tmp_path):
    path = tmp_path / "server" / "rows.parquet"
    pd.DataFrame({"f0": range(100), "f1": [0.5] * 100}).to_parquet(path)

    table = storage.preview_table(path, max_bytes=65536, max_rows=20, max_columns=1)

    assert (table.columns, table.total_rows, table.more) == (["f0"], 100, True)
    assert table.rows[:2] == [["0"], ["1"]]
    assert len(table.rows) == 20


def test_it_reports_a_file_that_is_not_parquet(tmp_path):
    path = tmp_path / "server" / "fake.parquet"
    path.write_text("not parquet")

    with pytest.raises((ValueError, OSError)):
        storage.preview_table(path, max_bytes=1024, max_rows=20, max_columns=30)


def test_it_gives_no_table_for_other_files(tmp_path):
    path = tmp_path / "server" / "notes.txt"
    path.write_text("hello")

    assert storage.preview_table(path, max_bytes=10, max_rows=2, max_columns=2) is None


def test_it_leaves_no_staging_folder_behind(settings):
    with pytest.raises(RuntimeError), storage.staging() as folder:
        (folder / "partial.bin").write_bytes(b"1")
        raise RuntimeError("refused half-way")

    assert files_under(Path(settings.STUDIO_DATASTORE)) == []


def test_it_checks_a_fetched_tree_for_links_and_size(tmp_path):
    tree = tmp_path / "fetched"
    tree.mkdir()
    (tree / "model.bin").write_bytes(b"0" * 100)

    assert storage.check_tree(tree, 100) == 100
    with pytest.raises(ValidationError, match="larger than"):
        storage.check_tree(tree, 99)
    (tree / "link").symlink_to("/etc/passwd")
    with pytest.raises(ValidationError, match="symbolic link"):
        storage.check_tree(tree, 1000)
