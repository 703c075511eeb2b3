"""Scoring host: user code under the deployment's Python; init() once, run() per batch.

Started by agent.py as `python host.py [options] -- [script arguments]`. It
imports only the standard library at start-up (pandas lazily), because the
deployment's interpreter may have nothing else; user code never runs anywhere
but here.
"""

from __future__ import annotations

import argparse
import atexit
import csv
import ctypes
import importlib.util
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

_HERE = Path(__file__).resolve().parent


def _load_sibling(name: str) -> ModuleType:
    """Load an engine module by path so the engine's folder stays off sys.path."""
    spec = importlib.util.spec_from_file_location(
        f"_scoring_engine_{name}", _HERE / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


protocol = _load_sibling("protocol")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    own, script_args = argv, []
    if "--" in argv:
        split = argv.index("--")
        own, script_args = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(prog="scoring host")
    parser.add_argument("--in-fd", type=int, required=True)
    parser.add_argument("--out-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--script", required=True)
    parser.add_argument("--code-dir", default="")
    parser.add_argument("--output-action", default="append_row")
    parser.add_argument("--logging-level", default="info")
    return parser.parse_args(own), script_args


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to kill this host when its agent dies, so no host is orphaned."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:
        os._exit(1)


def load_script(path: str, code_dir: str) -> ModuleType:
    """Import the scoring script the way Azure does: its folder first on sys.path."""
    if code_dir:
        sys.path.insert(0, code_dir)
    name = Path(path).stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import scoring script {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    missing = [fn for fn in ("init", "run") if not callable(getattr(module, fn, None))]
    if missing:
        raise AttributeError(
            f"scoring script {Path(path).name} defines no "
            f"{' and no '.join(f'{fn}()' for fn in missing)} function; the contract is"
            " init() once per process and run(mini_batch) per mini-batch"
        )
    return module


def build_mini_batch(message: dict[str, Any]) -> Any:
    """A list of file paths, or a DataFrame assembled from tabular segments."""
    if "files" in message:
        return list(message["files"])
    import io

    import pandas as pd

    frames = []
    for segment in message["segments"]:
        path = segment["path"]
        if path.lower().endswith(".csv"):
            with open(path, "rb") as handle:
                header = handle.readline()
                handle.seek(segment["start"])
                body = handle.read(segment["end"] - segment["start"])
            frame = pd.read_csv(io.BytesIO(header + body))
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            frame = table.slice(segment["first_row"], segment["rows"]).to_pandas()
        first = segment["first_row"]
        frame.index = pd.RangeIndex(first, first + len(frame))
        frames.append(frame)
    return frames[0] if len(frames) == 1 else pd.concat(frames)


def write_part(result: Any, part: str) -> int:
    """Write run()'s rows to `part`: first line the header ('' for lists).

    Returns the number of rows. Raises TypeError for a result of the wrong type.
    """
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
    if _is_dataframe(result):
        result.to_csv(part, index=False)
        return len(result)
    raise TypeError(_wrong_type(result))


def count_rows(result: Any) -> int:
    if isinstance(result, list) or _is_dataframe(result):
        return len(result)
    raise TypeError(_wrong_type(result))


def _is_dataframe(value: Any) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def _wrong_type(result: Any) -> str:
    return (
        f"run() returned {type(result).__name__}; it must return a pandas DataFrame"
        " or a list with one element per successful input item"
    )


def serve(args: argparse.Namespace, script: ModuleType) -> None:
    channel = protocol.Channel(args.in_fd)
    while True:
        message = channel.receive()
        if message is None or message["kind"] == protocol.SHUTDOWN:
            break
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            mini_batch = build_mini_batch(message)
            run_started = time.perf_counter()
            result = script.run(mini_batch)
            run_s = time.perf_counter() - run_started
            if result is None:
                raise TypeError(_wrong_type(result))
            write_started = time.perf_counter()
            if args.output_action == "append_row":
                returned = write_part(result, message["part"])
            else:
                returned = count_rows(result)
        except Exception as exc:
            protocol.send(
                args.out_fd,
                protocol.FAILED,
                index=message["index"],
                error=f"{type(exc).__name__}: {exc}",
                traceback=traceback.format_exc(),
                run_s=time.perf_counter() - started,
                cpu_s=time.process_time() - cpu_started,
            )
            continue
        protocol.send(
            args.out_fd,
            protocol.DONE,
            index=message["index"],
            returned=returned,
            run_s=run_s,
            write_s=time.perf_counter() - write_started,
            cpu_s=time.process_time() - cpu_started,
        )
    shutdown = getattr(script, "shutdown", None)
    if callable(shutdown):
        shutdown()


def main(argv: list[str]) -> int:
    args, script_args = parse_args(argv)
    die_with_parent(args.parent_pid)
    # The engine's folder is sys.path[0] when run as a script; user code must
    # not import engine modules by accident.
    if sys.path and Path(sys.path[0]).resolve() == _HERE:
        sys.path.pop(0)
    logging.basicConfig(
        stream=sys.stdout,
        level=args.logging_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    sys.argv = [args.script, *script_args]
    started = time.perf_counter()
    try:
        script = load_script(args.script, args.code_dir)
        script.init()
    except BaseException as exc:  # noqa: BLE001 - any failure of user code is reported
        protocol.send(
            args.out_fd,
            protocol.INIT_FAILED,
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(),
        )
        return 3
    protocol.send(
        args.out_fd,
        protocol.READY,
        pid=os.getpid(),
        init_s=time.perf_counter() - started,
    )
    serve(args, script)
    # Tearing down pandas/mlflow/sklearn at interpreter exit takes ~0.4 s that
    # every job would wait for; run the exit handlers, then leave at once.
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
