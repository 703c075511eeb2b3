"""Command line of the engine: `python -m scoring_engine run ...`, no web app."""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path

from .config import parse_assignments
from .deployment import apply_overrides, load_deployment
from .errors import EngineError
from .node import node_name
from .orchestrator import run_job
from .spec import INPUT_MODES, JobSpec

EXIT_COMPLETED, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scoring_engine")
    verbs = parser.add_subparsers(dest="verb", required=True)
    run = verbs.add_parser("run", help="run one batch scoring job")
    run.add_argument("--deployment", required=True, type=Path, help="deployment YAML")
    run.add_argument("--input", required=True, type=Path, help="a file or a folder")
    run.add_argument("--job-dir", required=True, type=Path, help="new job folder")
    run.add_argument("--input-type", choices=INPUT_MODES, default="files")
    run.add_argument("--glob", default=None, help="only files matching, e.g. *.csv")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--name", default=None, help="job name (default: random)")
    run.add_argument("--node-name", default=None, help="node name in log paths")
    run.add_argument(
        "--resume",
        action="store_true",
        help="go on with the unfinished job in --job-dir: committed mini-batches"
        " are kept, the rest run",
    )
    return parser


def default_env_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "batch-studio" / "environments"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        deployment = load_deployment(args.deployment)
        deployment = apply_overrides(deployment, parse_assignments(args.set))
        spec = JobSpec(
            name=args.name or f"job-{uuid.uuid4().hex[:8]}",
            deployment=deployment,
            input_path=args.input,
            job_dir=args.job_dir,
            node=args.node_name
            or os.environ.get("BATCH_STUDIO_NODE_NAME")
            or node_name(),
            env_cache=Path(
                os.environ.get("BATCH_STUDIO_ENV_CACHE") or default_env_cache()
            ),
            input_mode=args.input_type,
            input_glob=args.glob,
        )
        result = run_job(spec, resume=args.resume)
    except EngineError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"{result.summary_line()}; job folder: {result.job_dir}")
    return EXIT_COMPLETED if result.succeeded else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
