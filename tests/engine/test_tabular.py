"""Tabular input: run() receives DataFrames cut by rows or by size, in input order."""

from __future__ import annotations

import pandas as pd

from scoring_engine.config import MiniBatchSize
from scoring_engine.partition import partition_tabular
from tests.conftest import run_cli, write_deployment


def write_tables(folder, rows_per_file=(7, 5)):
    folder.mkdir(parents=True, exist_ok=True)
    start = 0
    for number, rows in enumerate(rows_per_file):
        frame = pd.DataFrame(
            {"a": range(start, start + rows), "b": [10 * n for n in range(rows)]}
        )
        if number % 2:
            frame.to_parquet(folder / f"part_{number}.parquet")
        else:
            frame.to_csv(folder / f"part_{number}.csv", index=False)
        start += rows
    return folder


def test_it_scores_tabular_input_in_row_mini_batches(tmp_path):
    inputs = write_tables(tmp_path / "inputs")
    deployment = write_deployment(tmp_path, "tabular.py", mini_batch_size=3)

    run = run_cli(deployment, inputs, tmp_path / "job", "--input-type", "tabular")

    assert run.returncode == 0, run.stderr
    assert "items 12 succeeded, 0 failed" in run.stdout
    output = pd.read_csv(run.job_dir / "outputs/predictions.csv")
    expected_a = list(range(12))
    expected_b = [10 * n for n in range(7)] + [10 * n for n in range(5)]
    assert list(output["total"]) == [
        a + b for a, b in zip(expected_a, expected_b, strict=True)
    ]
    assert list(output["row"]) == [*range(7), *range(5)]


def test_it_cuts_csv_by_size_on_line_boundaries(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("a,b\n" + "".join(f"{n},{n}\n" for n in range(1000)))

    batches = partition_tabular([path], MiniBatchSize(size_bytes=1024))

    assert len(batches) > 3
    rows = [s.rows for b in batches for s in b.segments]
    assert sum(rows) == 1000
    starts = [s.first_row for b in batches for s in b.segments]
    assert starts == sorted(starts) and starts[0] == 0
    data = path.read_bytes()
    for batch in batches:
        for segment in batch.segments:
            assert data[segment.start - 1 : segment.start] == b"\n"
            assert data[segment.end - 1 : segment.end] == b"\n"


def test_rows_mini_batches_span_files(tmp_path):
    inputs = write_tables(tmp_path / "inputs", rows_per_file=(4, 4))

    batches = partition_tabular(sorted(inputs.iterdir()), MiniBatchSize(count=3))

    assert [b.item_count for b in batches] == [3, 3, 2]
    assert len(batches[1].segments) == 2
