"""Tests of the built-in MLflow scorer, run as the engine runs it: loaded by path."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
from itertools import count
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

from studio.samples import (
    save_multi_output_model,
    save_sklearn_model,
    write_feature_csvs,
)

SCORER = Path(__file__).resolve().parents[2] / "scoring_engine" / "mlflow_scorer.py"
_module_ids = count()


@pytest.fixture(autouse=True)
def _private_tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_sklearn_model(tmp_path_factory.mktemp("classifier") / "model")


@pytest.fixture
def load_scorer(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], ModuleType]:
    """Point the engine's variable at a model and run a fresh scorer's init()."""

    def load(model_dir: Path, variable: str = "AZUREML_MODEL_DIR") -> ModuleType:
        monkeypatch.delenv("AZUREML_MODEL_DIR", raising=False)
        monkeypatch.delenv("MODEL_DIR", raising=False)
        monkeypatch.setenv(variable, str(model_dir))
        scorer = _import_scorer()
        scorer.init()
        return scorer

    return load


def _import_scorer() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"mlflow_scorer_{next(_module_ids)}", SCORER
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reference_predict(model_dir: Path, frame: pd.DataFrame) -> np.ndarray:
    import mlflow.pyfunc  # imported by studio.samples already, warning-free

    return np.asarray(mlflow.pyfunc.load_model(str(model_dir)).predict(frame))


def test_scores_csv_files_with_row_numbers_and_file_names(
    tmp_path: Path, classifier_dir: Path, load_scorer: Any
) -> None:
    paths = write_feature_csvs(tmp_path / "data", 3, 6)
    scorer = load_scorer(classifier_dir)

    result = scorer.run([str(path) for path in paths])

    assert list(result.columns) == ["row", "prediction", "file_name"]
    assert len(result) == 18
    assert result["row"].tolist() == list(range(6)) * 3
    assert result["file_name"].tolist() == [p.name for p in paths for _ in range(6)]
    for path in paths:
        expected = _reference_predict(
            classifier_dir, pd.read_csv(path).astype("float64")
        )
        got = result.loc[result["file_name"] == path.name, "prediction"]
        np.testing.assert_array_equal(got.to_numpy(), expected)


def test_reads_parquet_alongside_csv(
    tmp_path: Path, classifier_dir: Path, load_scorer: Any
) -> None:
    (csv_path,) = write_feature_csvs(tmp_path, 1, 4)
    frame = pd.read_csv(csv_path)
    frame.to_parquet(tmp_path / "a.parquet")
    frame.head(2).to_parquet(tmp_path / "b.pq")
    scorer = load_scorer(classifier_dir)

    result = scorer.run(
        [str(tmp_path / "a.parquet"), str(csv_path), str(tmp_path / "b.pq")]
    )

    assert (
        result["file_name"].tolist()
        == ["a.parquet"] * 4 + [csv_path.name] * 4 + ["b.pq"] * 2
    )
    assert result["row"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    np.testing.assert_array_equal(
        result["prediction"].to_numpy()[:4], result["prediction"].to_numpy()[4:8]
    )


def test_unsupported_file_type_is_named(
    tmp_path: Path, classifier_dir: Path, load_scorer: Any
) -> None:
    (csv_path,) = write_feature_csvs(tmp_path, 1, 4)
    text = tmp_path / "notes.txt"
    text.write_text("f0,f1,f2,f3\n1,2,3,4\n")
    scorer = load_scorer(classifier_dir)

    with pytest.raises(ValueError, match=r"notes\.txt.*\.csv, \.parquet, \.pq"):
        scorer.run([str(csv_path), str(text)])


def test_integer_columns_are_converted_to_the_signature_type(
    tmp_path: Path, classifier_dir: Path, load_scorer: Any
) -> None:
    (path,) = write_feature_csvs(tmp_path, 1, 50)
    frame = pd.read_csv(path)
    # MLflow itself refuses int64 where the signature says double.
    assert frame["f0"].dtype == np.int64
    scorer = load_scorer(classifier_dir)

    result = scorer.run([str(path)])

    expected = _reference_predict(classifier_dir, frame.astype("float64"))
    np.testing.assert_array_equal(result["prediction"].to_numpy(), expected)


def test_missing_column_is_named_with_its_file(
    tmp_path: Path, classifier_dir: Path, load_scorer: Any
) -> None:
    good, bad = write_feature_csvs(tmp_path, 2, 4)
    pd.read_csv(bad).drop(columns="f2").to_csv(bad, index=False)
    scorer = load_scorer(classifier_dir)

    with pytest.raises(ValueError, match=r"file_00001\.csv has no column 'f2'"):
        scorer.run([str(good), str(bad)])


def test_empty_files_contribute_no_rows(
    tmp_path: Path, classifier_dir: Path, load_scorer: Any
) -> None:
    (path,) = write_feature_csvs(tmp_path, 1, 3)
    header_only = tmp_path / "header.csv"
    header_only.write_text("f0,f1,f2,f3\n")
    zero_bytes = tmp_path / "zero.csv"
    zero_bytes.touch()
    scorer = load_scorer(classifier_dir)

    result = scorer.run([str(header_only), str(path), str(zero_bytes)])
    nothing = scorer.run([str(header_only), str(zero_bytes)])

    assert result["file_name"].tolist() == [path.name] * 3
    assert list(nothing.columns) == ["row", "prediction", "file_name"]
    assert nothing.empty


def test_multi_output_model_gives_one_column_per_output(
    tmp_path: Path, load_scorer: Any
) -> None:
    model_dir = save_multi_output_model(tmp_path / "model")
    (path,) = write_feature_csvs(tmp_path / "data", 1, 5)
    scorer = load_scorer(model_dir)

    result = scorer.run([str(path)])

    assert list(result.columns) == ["row", "label", "score", "file_name"]
    f0 = pd.read_csv(path)["f0"].to_numpy(dtype=float)
    np.testing.assert_array_equal(result["score"].to_numpy(), f0)
    assert result["label"].tolist() == ["pos" if v > 0 else "neg" for v in f0]


def test_dataframe_input_uses_its_index_as_row(
    tmp_path: Path, load_scorer: Any
) -> None:
    model_dir = save_sklearn_model(tmp_path / "model", kind="regressor")
    (path,) = write_feature_csvs(tmp_path / "data", 1, 3)
    frame = pd.read_csv(path).set_axis([10, 20, 30])
    scorer = load_scorer(model_dir)

    result = scorer.run(frame)

    assert list(result.columns) == ["row", "prediction"]
    assert result["row"].tolist() == [10, 20, 30]
    expected = _reference_predict(model_dir, frame.astype("float64"))
    np.testing.assert_allclose(result["prediction"].to_numpy(), expected)
    assert frame["f0"].dtype == np.int64  # the caller's frame is left as it was


@pytest.mark.parametrize("variable", ["AZUREML_MODEL_DIR", "MODEL_DIR"])
def test_model_folder_nested_one_level_down_is_found(
    tmp_path: Path, classifier_dir: Path, load_scorer: Any, variable: str
) -> None:
    outer = tmp_path / "mount"
    (outer / "unrelated").mkdir(parents=True)
    save_sklearn_model(outer / "my-model")
    (path,) = write_feature_csvs(tmp_path / "data", 1, 3)

    scorer = load_scorer(outer, variable)

    assert len(scorer.run([str(path)])) == 3


def test_two_nested_models_are_refused(tmp_path: Path, load_scorer: Any) -> None:
    save_multi_output_model(tmp_path / "a")
    save_multi_output_model(tmp_path / "b")

    with pytest.raises(FileNotFoundError, match="found 2"):
        load_scorer(tmp_path)


def test_predict_is_called_once_per_mini_batch(
    tmp_path: Path,
    classifier_dir: Path,
    load_scorer: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = write_feature_csvs(tmp_path, 4, 5)
    scorer = load_scorer(classifier_dir)
    calls: list[int] = []
    predict = scorer.model.predict

    def counting_predict(data: pd.DataFrame, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(data))
        return predict(data, *args, **kwargs)

    monkeypatch.setattr(scorer.model, "predict", counting_predict)

    result = scorer.run([str(path) for path in paths])

    assert calls == [20]
    assert len(result) == 20


def test_predict_returning_none_fails(
    tmp_path: Path,
    classifier_dir: Path,
    load_scorer: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (path,) = write_feature_csvs(tmp_path, 1, 3)
    scorer = load_scorer(classifier_dir)
    monkeypatch.setattr(scorer.model, "predict", lambda data: None)

    with pytest.raises(ValueError, match="model.predict returned None"):
        scorer.run([str(path)])


def test_import_uses_only_the_standard_library() -> None:
    # The scoring process may lack these until init(); a fresh interpreter shows it.
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('s', {str(SCORER)!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(sorted({'numpy', 'pandas', 'mlflow'} & set(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
