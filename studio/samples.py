"""Tiny real MLflow models and feature CSVs: the demo, tests and benchmarks use them."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import tempfile
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# sklearn's tree storage is reviewed and trusted here: we train the models ourselves.
# skops refuses to load a RandomForest without it.
SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]

# The multi-output model is saved as code rather than cloudpickled: a pickled class
# would need this module importable, and the Python version it was saved with, in the
# scoring process.
_MULTI_OUTPUT_CODE = textwrap.dedent(
    """
    import numpy as np
    import pandas as pd
    from mlflow.models import set_model
    from mlflow.pyfunc import PythonModel


    class LabelAndScore(PythonModel):
        def predict(self, context, model_input: pd.DataFrame, params=None):
            score = model_input["f0"].to_numpy(dtype=float)
            label = np.where(score > 0, "pos", "neg")
            return pd.DataFrame({"label": label, "score": score})


    set_model(LabelAndScore())
    """
)


def feature_names(n_features: int) -> list[str]:
    return [f"f{i}" for i in range(n_features)]


def save_sklearn_model(
    path: Path,
    *,
    n_features: int = 4,
    n_estimators: int = 10,
    kind: str = "classifier",
    seed: int = 0,
) -> Path:
    """Train a RandomForest on synthetic data and save it as an MLflow model."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    mlflow = _import_mlflow()
    x = _features(np.random.default_rng(seed), 200, n_features)
    signal = x["f0"] + (x["f1"] if n_features > 1 else 0.0)
    if kind == "classifier":
        estimator: Any = RandomForestClassifier(n_estimators, random_state=seed)
        estimator.fit(x, (signal > 0).astype(np.int64))
    elif kind == "regressor":
        estimator = RandomForestRegressor(n_estimators, random_state=seed)
        estimator.fit(x, signal)
    else:
        raise ValueError(f"kind must be 'classifier' or 'regressor', not {kind!r}")
    signature = mlflow.models.infer_signature(x, estimator.predict(x))
    with _private_tracking():
        mlflow.sklearn.save_model(
            estimator,
            str(path),
            signature=signature,
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
            pip_requirements=_pinned(
                "mlflow-skinny", "scikit-learn", "skops", "pandas"
            ),
        )
    return path


def save_multi_output_model(path: Path) -> Path:
    """Save a pyfunc model whose predict returns columns "label" (str) and "score"."""
    mlflow = _import_mlflow()
    example = _features(np.random.default_rng(0), 3, 4)
    # object-dtype column labels: mlflow compares the labels with a range while saving
    # the example, which pandas 3 deprecates (a warning) for its default str labels.
    example.columns = pd.Index(list(example.columns), dtype=object)
    with tempfile.TemporaryDirectory() as tmp, _private_tracking():
        code = Path(tmp) / "label_and_score.py"
        code.write_text(_MULTI_OUTPUT_CODE)
        # An example rather than a signature: saving with only a signature warns
        # that no input example was given.
        mlflow.pyfunc.save_model(
            str(path),
            python_model=str(code),
            input_example=example,
            pip_requirements=_pinned("mlflow-skinny", "pandas", "numpy"),
        )
    return path


def write_feature_csvs(
    folder: Path, n_files: int, rows: int, *, n_features: int = 4, seed: int = 0
) -> list[Path]:
    """Write file_00000.csv... with columns f0..; f0 is written as integers."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n_files):
        frame = _features(rng, rows, n_features)
        # The signature says double; integers in the file exercise type conversion.
        frame["f0"] = frame["f0"].astype(np.int64)
        path = folder / f"file_{i:05d}.csv"
        frame.to_csv(path, index=False)
        paths.append(path)
    return paths


def _features(rng: np.random.Generator, rows: int, n_features: int) -> pd.DataFrame:
    values = rng.normal(size=(rows, n_features))
    # f0 is integer-valued (stored as float) so files can hold it as ints.
    values[:, 0] = np.round(values[:, 0] * 3)
    return pd.DataFrame(values, columns=feature_names(n_features))


def _pinned(*packages: str) -> list[str]:
    """The installed versions, pinned: also spares mlflow inferring them, which
    loads the model in a subprocess (~2 s a model) and picks up pytest and full mlflow.
    """
    return [f"{name}=={importlib.metadata.version(name)}" for name in packages]


def _import_mlflow() -> Any:
    with warnings.catch_warnings():
        # mlflow 3 warns "Any type hint is inferred as AnyType" while importing
        # mlflow.types.responses, inside a block meant to hide it; harmless.
        warnings.filterwarnings(
            "ignore",
            message=".*Any type hint is inferred as AnyType",
            category=UserWarning,
        )
        import mlflow.models
        import mlflow.pyfunc
        import mlflow.sklearn
    return mlflow


@contextlib.contextmanager
def _private_tracking() -> Iterator[None]:
    """Keep mlflow from creating mlflow.db in the working folder, unless told where."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        yield
        return
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = Path(tmp).as_uri()
        try:
            yield
        finally:
            del os.environ["MLFLOW_TRACKING_URI"]
