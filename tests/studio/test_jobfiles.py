"""studio.jobfiles: bounded, read-only access to a job folder."""

from __future__ import annotations

import io
import os
import threading
import time
import zipfile
from pathlib import Path

import pytest

from studio import jobfiles
from tests.conftest import run_cli, write_deployment, write_text_files

GB = 1024**3


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "jobs" / "job-1"
    (folder / "logs" / "sys").mkdir(parents=True)
    (folder / "azureml-logs").mkdir()
    (folder / "outputs").mkdir()
    return folder


def write(job_dir: Path, relative: str, data: bytes | str) -> Path:
    path = job_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def append(path: Path, data: bytes | str) -> None:
    with open(path, "ab") as file:
        file.write(data.encode() if isinstance(data, str) else data)


def read_forward(job_dir: Path, relative: str, limit: int) -> list[jobfiles.Chunk]:
    """Follow the file from byte 0 to its end, chunk by chunk."""
    chunks, offset = [], 0
    while True:
        chunk = jobfiles.tail(job_dir, relative, offset, limit)
        if chunk.end == offset:
            return chunks
        chunks.append(chunk)
        offset = chunk.end


def read_backward(job_dir: Path, relative: str, limit: int) -> list[jobfiles.Chunk]:
    """Load earlier parts from the file's end back to byte 0."""
    chunks = []
    end = (job_dir / relative).stat().st_size
    while end > 0:
        chunk = jobfiles.before(job_dir, relative, end, limit)
        assert chunk.start < end, "no progress"
        chunks.insert(0, chunk)
        end = chunk.start
    return chunks


# resolve


def test_it_resolves_a_file_inside_the_job_folder(job_dir):
    path = write(job_dir, "logs/job_result.txt", "completed\n")

    assert jobfiles.resolve(job_dir, "logs/job_result.txt") == path.resolve()
    assert jobfiles.resolve(job_dir, "logs/./job_result.txt") == path.resolve()


@pytest.mark.parametrize(
    "relative",
    [
        "..",
        "../secret.txt",
        "logs/../../secret.txt",
        "logs/../logs/job_result.txt",  # inside, but '..' is refused outright
        "/etc/passwd",
        "logs/job_result.txt\x00.png",
        "",
    ],
)
def test_it_refuses_paths_that_could_leave_the_folder(job_dir, relative):
    write(job_dir, "logs/job_result.txt", "completed\n")
    write(job_dir.parent, "secret.txt", "secret\n")

    with pytest.raises(PermissionError, match="job folder"):
        jobfiles.resolve(job_dir, relative)


def test_it_refuses_symlinks_leading_outside(job_dir, tmp_path):
    secret = write(tmp_path, "secret.txt", "top secret\n")
    (job_dir / "logs" / "leak.txt").symlink_to(secret)
    (job_dir / "logs" / "etc").symlink_to(tmp_path)

    for relative in ("logs/leak.txt", "logs/etc/secret.txt", "logs/etc"):
        with pytest.raises(PermissionError, match="leads outside the job folder"):
            jobfiles.resolve(job_dir, relative)
        with pytest.raises(PermissionError):
            jobfiles.tail(job_dir, relative)
    with pytest.raises(PermissionError):
        jobfiles.search(job_dir, "logs/leak.txt", "secret")


def test_it_follows_symlinks_that_stay_inside(job_dir):
    target = write(job_dir, "logs/real.txt", "inside\n")
    (job_dir / "logs" / "alias.txt").symlink_to(target)

    assert jobfiles.tail(job_dir, "logs/alias.txt").text == "inside\n"


def test_it_says_which_file_is_missing_without_naming_real_paths(job_dir):
    with pytest.raises(FileNotFoundError) as raised:
        jobfiles.tail(job_dir, "logs/nope.txt")

    assert str(raised.value) == "no file 'logs/nope.txt' in the job folder"


def test_it_refuses_folders_and_fifos_without_blocking(job_dir):
    os.mkfifo(job_dir / "logs" / "pipe")

    with pytest.raises(IsADirectoryError, match="'logs' is a folder"):
        jobfiles.tail(job_dir, "logs")
    with pytest.raises(PermissionError, match="not a regular file"):
        jobfiles.tail(job_dir, "logs/pipe")


# tail


def test_it_opens_a_small_file_whole(job_dir):
    write(job_dir, "logs/a.txt", "one\ntwo\n")

    chunk = jobfiles.tail(job_dir, "logs/a.txt")

    assert (chunk.text, chunk.start, chunk.end, chunk.size) == ("one\ntwo\n", 0, 8, 8)


def test_it_opens_at_the_end_from_the_first_whole_line(job_dir):
    lines = [f"line {number:04d}\n" for number in range(1000)]  # 10 bytes each
    write(job_dir, "logs/a.txt", "".join(lines))

    chunk = jobfiles.tail(job_dir, "logs/a.txt", limit=95)

    assert chunk.text == "".join(lines[-9:])
    assert (chunk.start, chunk.end, chunk.size) == (9910, 10000, 10000)


def test_it_keeps_a_line_that_starts_exactly_at_the_window(job_dir):
    write(job_dir, "logs/a.txt", "aaaa\nbbbb\ncccc\n")

    assert jobfiles.tail(job_dir, "logs/a.txt", limit=10).text == "bbbb\ncccc\n"


def test_a_chain_of_tails_rebuilds_the_file_exactly(job_dir):
    text = "".join(f"{number} {'é€😀' * (number % 5)} x\n" for number in range(120))
    write(job_dir, "logs/a.txt", text)

    for limit in (4, 5, 7, 16, 61, 4096):
        chunks = read_forward(job_dir, "logs/a.txt", limit)
        assert "".join(chunk.text for chunk in chunks) == text
        assert all("\ufffd" not in chunk.text for chunk in chunks)


def test_it_never_splits_a_character_in_a_line_longer_than_the_limit(job_dir):
    text = "😀é€a" * 200  # one line, no newline, 10 bytes per repeat
    write(job_dir, "logs/a.txt", text)

    for limit in (4, 5, 6, 7, 33):
        chunks = read_forward(job_dir, "logs/a.txt", limit)
        assert "".join(chunk.text for chunk in chunks) == text
        assert all("\ufffd" not in chunk.text for chunk in chunks)
        opened = jobfiles.tail(job_dir, "logs/a.txt", limit=limit)
        assert opened.text and "\ufffd" not in opened.text
        assert text.endswith(opened.text)


def test_it_holds_back_a_partial_last_line_until_it_is_finished(job_dir):
    path = write(job_dir, "logs/a.txt", "first\nsec")

    opened = jobfiles.tail(job_dir, "logs/a.txt")
    assert (opened.text, opened.end) == ("first\n", 6)

    append(path, "ond\nthi")
    grown = jobfiles.tail(job_dir, "logs/a.txt", opened.end)
    assert (grown.text, grown.end) == ("second\n", 13)

    # Once it is all that is left, an unterminated last line is returned.
    rest = jobfiles.tail(job_dir, "logs/a.txt", grown.end)
    assert (rest.text, rest.end, rest.size) == ("thi", 16, 16)
    assert jobfiles.tail(job_dir, "logs/a.txt", rest.end).text == ""


def test_it_returns_only_what_was_appended_between_reads(job_dir):
    path = write(job_dir, "logs/a.txt", "one\n")
    first = jobfiles.tail(job_dir, "logs/a.txt")

    append(path, "two\nthree\n")
    second = jobfiles.tail(job_dir, "logs/a.txt", first.end)
    nothing = jobfiles.tail(job_dir, "logs/a.txt", second.end)

    assert second.text == "two\nthree\n"
    assert (second.start, second.end, second.size) == (4, 14, 14)
    assert (nothing.text, nothing.start, nothing.end) == ("", 14, 14)


def test_it_waits_for_a_character_being_written(job_dir):
    euro = "€".encode()
    path = write(job_dir, "logs/a.txt", b"price " + euro[:1])

    first = jobfiles.tail(job_dir, "logs/a.txt")
    append(path, euro[1:] + b"\n")
    second = jobfiles.tail(job_dir, "logs/a.txt", first.end)

    assert (first.text, first.end) == ("price ", 6)
    assert second.text == "€\n"


def test_it_refuses_a_negative_offset(job_dir):
    write(job_dir, "logs/a.txt", "one\n")

    with pytest.raises(ValueError, match="offset"):
        jobfiles.tail(job_dir, "logs/a.txt", -1)


# before


def test_loading_earlier_parts_rebuilds_the_file_from_line_starts(job_dir):
    text = "".join(f"{number} {'ü' * (number % 7)}\n" for number in range(200))
    write(job_dir, "logs/a.txt", text)

    for limit in (4, 9, 50, 4096):
        chunks = read_backward(job_dir, "logs/a.txt", limit)
        assert "".join(chunk.text for chunk in chunks) == text
        assert all("\ufffd" not in chunk.text for chunk in chunks)
    # With room for whole lines, every part starts on a line start.
    for chunk in read_backward(job_dir, "logs/a.txt", 50):
        assert chunk.start == 0 or text.encode()[chunk.start - 1 : chunk.start] == b"\n"


def test_it_loads_the_part_before_an_opened_end(job_dir):
    lines = [f"line {number:04d}\n" for number in range(100)]
    write(job_dir, "logs/a.txt", "".join(lines))
    opened = jobfiles.tail(job_dir, "logs/a.txt", limit=100)

    earlier = jobfiles.before(job_dir, "logs/a.txt", opened.start, limit=100)

    assert earlier.end == opened.start
    assert earlier.text == "".join(lines[-20:-10])


# follow: a reader's cursor over a growing, truncated or replaced file


def test_follow_starts_over_when_a_summary_is_replaced_whole(job_dir):
    path = write(job_dir, "logs/job_progress_overview.txt", "Status: running\n")
    first, reset = jobfiles.follow(job_dir, "logs/job_progress_overview.txt", None)
    assert reset and first.text == "Status: running\n"

    replacement = path.with_name(".overview.tmp")
    replacement.write_text("Status: completed\nResult: 2/2\n")
    os.replace(replacement, path)
    chunk, reset = jobfiles.follow(
        job_dir, "logs/job_progress_overview.txt", first.end, first.fingerprint
    )

    assert reset
    assert chunk.text == "Status: completed\nResult: 2/2\n"


def test_follow_continues_an_appended_log(job_dir):
    path = write(job_dir, "logs/a.txt", "one\n")
    first, _ = jobfiles.follow(job_dir, "logs/a.txt", None)

    append(path, "two\n")
    chunk, reset = jobfiles.follow(job_dir, "logs/a.txt", first.end, first.fingerprint)

    assert not reset
    assert chunk.text == "two\n"


def test_follow_starts_over_when_the_file_was_truncated(job_dir):
    path = write(job_dir, "logs/a.txt", "one\ntwo\nthree\n")
    first, _ = jobfiles.follow(job_dir, "logs/a.txt", None)

    path.write_text("new\n")
    chunk, reset = jobfiles.follow(job_dir, "logs/a.txt", first.end)

    assert reset
    assert (chunk.text, chunk.start) == ("new\n", 0)


# a 1 GB log


@pytest.fixture
def gigabyte_log(job_dir: Path) -> Path:
    """A 1 GB sparse file with a few real lines at its end."""
    path = job_dir / "logs" / "big.txt"
    with open(path, "wb") as file:
        file.truncate(GB)
        file.seek(GB)
        file.write(b"\nalmost done\nERROR: disk full\nlast line\n")
    return path


def test_it_opens_a_gigabyte_log_at_its_end_at_once(job_dir, gigabyte_log):
    # This thread's CPU time: neither other processes nor other threads'
    # leftovers from earlier tests stretch it.
    started = time.thread_time()
    chunk = jobfiles.tail(job_dir, "logs/big.txt")
    elapsed = time.thread_time() - started

    assert chunk.text == "almost done\nERROR: disk full\nlast line\n"
    assert chunk.end == chunk.size == gigabyte_log.stat().st_size
    assert elapsed < 1, f"opening a 1 GB log took {elapsed:.3f} s"

    started = time.thread_time()
    earlier = jobfiles.before(job_dir, "logs/big.txt", chunk.start)
    assert time.thread_time() - started < 1
    assert earlier.end == chunk.start
    # One long line of NULs: the part of it that fits, up to its newline.
    assert earlier.text == "\x00" * (jobfiles.TAIL_LIMIT - 1) + "\n"


def test_search_of_a_gigabyte_log_reads_only_its_last_max_bytes(job_dir, gigabyte_log):
    started = time.thread_time()
    matches = jobfiles.search(job_dir, "logs/big.txt", "disk FULL", max_bytes=1 << 20)
    elapsed = time.thread_time() - started

    size = gigabyte_log.stat().st_size
    assert [(m.line_no, m.line) for m in matches] == [(None, "ERROR: disk full")]
    assert matches[0].offset == size - len("ERROR: disk full\nlast line\n")
    assert elapsed < 1, f"searching the last MB took {elapsed:.3f} s"


# search


def test_search_finds_lines_case_insensitively_with_numbers_and_offsets(job_dir):
    text = "start\nan Error here\nfine\nERROR again, error twice\nend\n"
    write(job_dir, "logs/a.txt", text)

    matches = jobfiles.search(job_dir, "logs/a.txt", "error")

    assert [(m.line_no, m.line) for m in matches] == [
        (2, "an Error here"),
        (4, "ERROR again, error twice"),
    ]
    for match in matches:
        assert jobfiles.tail(job_dir, "logs/a.txt", match.offset).text.startswith(
            match.line
        )


def test_search_folds_case_beyond_ascii(job_dir):
    write(job_dir, "logs/a.txt", "ok\nÉchec du lot 3\nfine\n")

    matches = jobfiles.search(job_dir, "logs/a.txt", "échec")

    assert [(m.line_no, m.offset, m.line) for m in matches] == [
        (2, 3, "Échec du lot 3")
    ]


def test_search_finds_lines_across_block_boundaries(job_dir, monkeypatch):
    monkeypatch.setattr(jobfiles, "SEARCH_BLOCK", 16)
    lines = [f"row {number:03d} {'needle' if number % 7 == 0 else 'hay'}\n"
             for number in range(100)]  # fmt: skip
    write(job_dir, "logs/a.txt", "".join(lines))

    matches = jobfiles.search(job_dir, "logs/a.txt", "NEEDLE")

    assert [m.line_no for m in matches] == list(range(1, 101, 7))
    assert all(m.line.endswith("needle") for m in matches)


def test_search_stops_at_max_matches(job_dir):
    write(job_dir, "logs/a.txt", "hit\n" * 1000)

    matches = jobfiles.search(job_dir, "logs/a.txt", "hit", max_matches=5)

    assert [m.line_no for m in matches] == [1, 2, 3, 4, 5]


def test_search_of_a_large_file_keeps_to_its_last_max_bytes(job_dir):
    write(job_dir, "logs/a.txt", "hit early\n" + "x" * 100 + "\nhit late\n")

    matches = jobfiles.search(job_dir, "logs/a.txt", "hit", max_bytes=50)

    assert [(m.line_no, m.line) for m in matches] == [(None, "hit late")]


@pytest.mark.parametrize("needle", ["", "two\nlines"])
def test_search_refuses_empty_or_multi_line_text(job_dir, needle):
    write(job_dir, "logs/a.txt", "text\n")

    with pytest.raises(ValueError, match="one non-empty line"):
        jobfiles.search(job_dir, "logs/a.txt", needle)


# tree


def test_the_tree_lists_folders_first_and_hides_engine_state(job_dir, tmp_path):
    write(job_dir, "outputs/predictions.csv", "a,b\n")
    write(job_dir, "logs/job_result.txt", "completed\n")
    write(job_dir, "logs/sys/master_role.txt", "x\n")
    write(job_dir, ".state/parts/00000000.csv", "hidden\n")
    write(tmp_path, "outside/secret.txt", "secret\n")
    (job_dir / "logs" / "elsewhere").symlink_to(tmp_path / "outside")

    entries = jobfiles.tree(job_dir)

    assert [(e.path, e.is_dir, e.is_link) for e in entries] == [
        ("azureml-logs", True, False),
        ("logs", True, False),
        ("logs/sys", True, False),
        ("logs/sys/master_role.txt", False, False),
        ("logs/elsewhere", False, True),
        ("logs/job_result.txt", False, False),
        ("outputs", True, False),
        ("outputs/predictions.csv", False, False),
    ]
    result = entries[5]
    assert (result.name, result.depth, result.size) == ("job_result.txt", 1, 10)
    assert result.modified == pytest.approx(time.time(), abs=60)


def test_the_tree_is_bounded(job_dir):
    for number in range(50):
        write(job_dir, f"logs/user/stdout/process{number:03d}.stdout.txt", "x\n")

    entries = jobfiles.tree(job_dir, max_entries=10)

    assert len(entries) == 10


def test_the_tree_of_a_job_not_started_is_empty(tmp_path):
    assert jobfiles.tree(tmp_path / "not-yet") == []


def test_nest_turns_the_tree_into_folders_with_children(job_dir):
    write(job_dir, "logs/sys/master_role.txt", "x\n")
    write(job_dir, "logs/job_result.txt", "completed\n")

    nodes = jobfiles.nest(jobfiles.tree(job_dir))

    assert [node.entry.path for node in nodes] == ["azureml-logs", "logs", "outputs"]
    logs = nodes[1]
    assert [child.entry.path for child in logs.children] == [
        "logs/sys",
        "logs/job_result.txt",
    ]
    assert [c.entry.path for c in logs.children[0].children] == [
        "logs/sys/master_role.txt"
    ]


# downloads


def test_a_snapshot_sends_the_file_as_it_was_when_opened(job_dir):
    path = write(job_dir, "logs/a.txt", "one\n")
    snapshot = jobfiles.FileSnapshot(job_dir, "logs/a.txt")
    append(path, "two\n")

    try:
        assert (snapshot.name, snapshot.size) == ("a.txt", 4)
        assert b"".join(snapshot) == b"one\n"
    finally:
        snapshot.close()


def test_the_logs_zip_holds_the_log_folders_only(job_dir, tmp_path):
    write(job_dir, "azureml-logs/70_driver_log.txt", "driver\n")
    write(job_dir, "logs/sys/master_role.txt", "master\n")
    write(job_dir, "outputs/predictions.csv", "a,b\n")
    write(job_dir, "logs/.hidden", "engine\n")
    write(tmp_path, "secret.txt", "secret\n")
    (job_dir / "logs" / "leak.txt").symlink_to(tmp_path / "secret.txt")

    archive = zipfile.ZipFile(io.BytesIO(b"".join(jobfiles.zip_logs(job_dir))))

    assert sorted(archive.namelist()) == [
        "azureml-logs/70_driver_log.txt",
        "logs/sys/master_role.txt",
    ]
    assert archive.read("logs/sys/master_role.txt") == b"master\n"
    assert archive.testzip() is None


def test_the_logs_zip_streams_a_large_log_in_pieces(job_dir, monkeypatch):
    monkeypatch.setattr(jobfiles, "COPY_BLOCK", 64 * 1024)
    data = os.urandom(1024 * 1024)  # incompressible: the zip is as large
    write(job_dir, "logs/user/stdout/node-a/process000.stdout.txt", data)

    pieces = list(jobfiles.zip_logs(job_dir))

    assert max(len(piece) for piece in pieces) < 256 * 1024
    archive = zipfile.ZipFile(io.BytesIO(b"".join(pieces)))
    assert archive.read("logs/user/stdout/node-a/process000.stdout.txt") == data


# a real engine run


def test_following_a_real_job_log_while_it_runs_rebuilds_it_exactly(tmp_path):
    deployment = write_deployment(
        tmp_path / "deployment", "slow_print.py", mini_batch_size=1
    )
    inputs = tmp_path / "inputs"
    write_text_files(inputs, 4)
    job_dir = tmp_path / "job"
    relative = "logs/user/stdout/node-a/process000.stdout.txt"
    finished = threading.Event()
    runs = []

    def run() -> None:
        runs.append(run_cli(deployment, inputs, job_dir))
        finished.set()

    worker = threading.Thread(target=run)
    worker.start()
    pieces, offset, fingerprint = [], None, None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = finished.is_set()  # before reading: a finished run wrote its last byte
        if (job_dir / relative).exists():
            chunk, reset = jobfiles.follow(job_dir, relative, offset, fingerprint)
            assert not reset or offset is None
            pieces.append(chunk.text)
            offset, fingerprint = chunk.end, chunk.fingerprint
            if done and chunk.end == chunk.size:
                break
        elif done:
            break
        time.sleep(0.02)
    else:
        pytest.fail("the job did not end within 60 s")
    worker.join()

    assert runs[0].returncode == 0, runs[0].stderr
    whole = (job_dir / relative).read_text()
    assert "".join(pieces) == whole
    assert whole.count("slow line") == 4 * 5
    assert sum(1 for piece in pieces if piece) > 1, "the log was read while it grew"
