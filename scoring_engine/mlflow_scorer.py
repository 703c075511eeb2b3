"""Built-in no-code scorer: loads an MLflow model, scores CSV/Parquet mini-batches."""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any

# Loaded by file path in a scoring process that may run another interpreter, like a
# user's scoring script: import only the stdlib here; pandas/numpy/mlflow are imported
# inside functions, where the scoring environment provides them.
if TYPE_CHECKING:
    import pandas as pd

_READERS = {".csv": "read_csv", ".parquet": "read_parquet", ".pq": "read_parquet"}
_RESERVED = ("row", "file_name")
# Only these signature types are cast: MLflow refuses e.g. int64 -> double and
# float -> long. Others (bool, datetime, binary...) are left to MLflow's own checks,
# as a blind astype would turn the string "False" into True.
_NUMERIC = ("integer", "long", "float", "double")

model: Any = None
# The signature's required column names, and (name, target dtype) for columns to cast;
# the target is a numpy dtype or "str".
_required: list[str] = []
_casts: list[tuple[str, Any]] = []


def init() -> None:
    global model, _required, _casts
    with warnings.catch_warnings():
        # mlflow 3 warns "Any type hint is inferred as AnyType" while importing
        # mlflow.types.responses, inside a block meant to hide it; harmless.
        warnings.filterwarnings(
            "ignore",
            message=".*Any type hint is inferred as AnyType",
            category=UserWarning,
        )
        import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(_model_dir())
    _required, _casts = _read_signature(model.metadata.get_input_schema())


def run(mini_batch: list[str] | pd.DataFrame) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    if model is None:
        raise RuntimeError("init() must be called before run()")
    if isinstance(mini_batch, pd.DataFrame):
        _check_columns(mini_batch, "the input data")
        if not len(mini_batch):
            return _empty(file_name=False)
        columns = _predict(_convert(mini_batch), len(mini_batch))
        return pd.DataFrame({"row": mini_batch.index.to_numpy(), **columns})

    frames: list[pd.DataFrame] = []
    names: list[str] = []
    for path in mini_batch:
        frame = _read(os.fspath(path))
        if len(frame):
            frames.append(frame)
            names.append(os.path.basename(path))
    if not frames:
        return _empty(file_name=True)
    lengths = [len(frame) for frame in frames]
    # One predict per mini-batch: the per-call cost (schema checks, model dispatch)
    # makes one call per file much slower.
    data = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    columns = _predict(_convert(data), len(data))
    return pd.DataFrame(
        {
            "row": np.concatenate([np.arange(n, dtype=np.int64) for n in lengths]),
            **columns,
            "file_name": np.repeat(np.array(names, dtype=object), lengths),
        }
    )


def _empty(*, file_name: bool) -> pd.DataFrame:
    """The result for no rows at all: predict is not called (models reject 0 rows)."""
    import numpy as np
    import pandas as pd

    columns: dict[str, Any] = {
        "row": np.empty(0, dtype=np.int64),
        "prediction": np.empty(0),
    }
    if file_name:
        columns["file_name"] = np.empty(0, dtype=object)
    return pd.DataFrame(columns)


def _model_dir() -> str:
    root = os.environ.get("AZUREML_MODEL_DIR") or os.environ.get("MODEL_DIR")
    if not root:
        raise RuntimeError("Neither AZUREML_MODEL_DIR nor MODEL_DIR is set")
    if os.path.isfile(os.path.join(root, "MLmodel")):
        return root
    # Azure mounts the registered model's folder inside the model directory.
    found = sorted(
        entry.path
        for entry in os.scandir(root)
        if entry.is_dir() and os.path.isfile(os.path.join(entry.path, "MLmodel"))
    )
    if len(found) != 1:
        where = f": {', '.join(found)}" if found else ""
        raise FileNotFoundError(
            f"Expected an MLmodel file in {root} or in exactly one of its "
            f"subfolders, found {len(found)}{where}"
        )
    return found[0]


def _read_signature(schema: Any) -> tuple[list[str], list[tuple[str, Any]]]:
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return [], []
    import numpy as np

    required = [spec.name for spec in schema.inputs if spec.required]
    casts = []
    for spec in schema.inputs:
        type_name = getattr(spec.type, "name", None)
        if type_name in _NUMERIC:
            casts.append((spec.name, np.dtype(spec.type.to_numpy())))
        elif type_name == "string":
            casts.append((spec.name, "str"))
    return required, casts


def _read(path: str) -> pd.DataFrame:
    import pandas as pd

    reader = _READERS.get(os.path.splitext(path)[1].lower())
    if reader is None:
        raise ValueError(
            f"Cannot score {path}: unsupported file type; accepted kinds are "
            f"{', '.join(_READERS)}"
        )
    if os.path.getsize(path) == 0:
        return pd.DataFrame()
    frame = getattr(pd, reader)(path)
    if len(frame):
        _check_columns(frame, path)
    return frame


def _check_columns(frame: pd.DataFrame, source: str) -> None:
    missing = [name for name in _required if name not in frame.columns]
    if missing:
        raise ValueError(
            f"{source} has no column {', '.join(map(repr, missing))}, which the "
            "model signature requires"
        )


def _convert(frame: pd.DataFrame) -> pd.DataFrame:
    converted = {
        name: _cast(frame[name], name, target)
        for name, target in _casts
        if name in frame.columns
    }
    changed = {name: values for name, values in converted.items() if values is not None}
    # assign() returns a new frame: a caller's DataFrame is never modified.
    return frame.assign(**changed) if changed else frame


def _cast(values: pd.Series, name: str, target: Any) -> pd.Series | None:
    """Return the column as the signature's type, or None when it already is."""
    import pandas as pd

    if target == "str":
        if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
            return None
        return values.astype(str)
    if values.dtype == target:
        return None
    try:
        cast = values.astype(target)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"Column {name!r} cannot be converted from {values.dtype} to {target} "
            f"as the model signature requires: {exc}"
        ) from exc
    # astype truncates 1.5 to 1 silently; refuse rather than score altered data.
    if target.kind in "iu" and values.dtype.kind == "f" and not (cast == values).all():
        raise ValueError(
            f"Column {name!r} has non-integer values but the model signature "
            f"declares {target}"
        )
    return cast


def _predict(data: pd.DataFrame, n_rows: int) -> dict[str, Any]:
    """Predict once and return the prediction column(s) by output name."""
    import numpy as np
    import pandas as pd

    result = model.predict(data)
    if result is None:
        raise ValueError("model.predict returned None")
    if isinstance(result, dict):
        result = pd.DataFrame(result)
    if isinstance(result, pd.DataFrame):
        if result.shape[1] == 1:
            columns = {"prediction": result.iloc[:, 0].to_numpy()}
        else:
            columns = {
                str(name): result.iloc[:, i].to_numpy()
                for i, name in enumerate(result.columns)
            }
            if len(columns) != result.shape[1]:
                raise ValueError(
                    f"model.predict returned duplicate column names: {list(result)}"
                )
    else:
        values = result.to_numpy() if isinstance(result, pd.Series) else result
        values = np.asarray(values)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim == 1:
            columns = {"prediction": values}
        elif values.ndim == 2:
            columns = {f"prediction_{i}": values[:, i] for i in range(values.shape[1])}
        else:
            raise ValueError(
                f"model.predict returned an array of shape {values.shape}; "
                "expected one value or one row of values per input row"
            )
    clash = [name for name in columns if name in _RESERVED]
    if clash:
        raise ValueError(
            f"model.predict returned column(s) {', '.join(map(repr, clash))}, which "
            "clash with the output's own columns"
        )
    n_predicted = len(next(iter(columns.values())))
    if n_predicted != n_rows:
        raise ValueError(
            f"model.predict returned {n_predicted} predictions for {n_rows} rows"
        )
    return columns
