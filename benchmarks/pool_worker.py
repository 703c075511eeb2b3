"""Baseline pool worker: load a scoring script by path, init() once, run() per task."""

from __future__ import annotations

# Runs in spawned processes: standard library only (pandas comes with the scoring
# script), like the engine's scoring host.
import csv
import importlib.util
import os
import sys
import time
from types import ModuleType
from typing import Any

# (mini-batch index, file paths, part file to write)
Task = tuple[int, list[str], str]
# (index, part file, rows written, run() seconds, write seconds, epoch at the end)
TaskResult = tuple[int, str, int, float, float, float]

_script: ModuleType | None = None
_init_error = ""


def init_worker(script_path: str, model_dir: str | None) -> None:
    """Pool initializer: import the script by file path and call its init()."""
    global _script, _init_error
    if model_dir:
        os.environ["AZUREML_MODEL_DIR"] = model_dir
    try:
        name = os.path.splitext(os.path.basename(script_path))[0]
        spec = importlib.util.spec_from_file_location(name, script_path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {script_path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        module.init()
        _script = module
    except Exception as exc:  # noqa: BLE001 - reported by score_batch
        # Raising here would make the pool restart workers forever.
        _init_error = f"{type(exc).__name__}: {exc}"


def score_batch(task: Task) -> TaskResult:
    """Call run() on one mini-batch and write its rows as the engine's host does."""
    index, files, part = task
    if _script is None:
        raise RuntimeError(f"init() failed in the pool worker: {_init_error}")
    started = time.perf_counter()
    result = _script.run(files)
    written = time.perf_counter()
    rows = write_part(result, part)
    ended = time.perf_counter()
    return index, part, rows, written - started, ended - written, time.time()


def write_part(result: Any, part: str) -> int:
    """A DataFrame as CSV with its header; a list as a blank header then one line
    per element (the engine's part format)."""
    if isinstance(result, list):
        with open(part, "w", encoding="utf-8", newline="") as handle:
            handle.write("\n")
            writer = csv.writer(handle)
            for element in result:
                if isinstance(element, list | tuple):
                    writer.writerow(element)
                else:
                    handle.write(f"{element}\n")
        return len(result)
    result.to_csv(part, index=False)
    return len(result)
