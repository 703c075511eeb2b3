"""The engine's public surface is its __all__, and it never imports the web app."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import scoring_engine

ENGINE = Path(scoring_engine.__file__).parent


def test_the_public_surface_is_exactly_all():
    public = {n for n in dir(scoring_engine) if not n.startswith("_")} - {"annotations"}
    modules = {p.stem for p in ENGINE.glob("*.py")}
    assert public - modules == set(scoring_engine.__all__)


def test_the_engine_does_not_import_django_or_studio():
    for path in ENGINE.glob("*.py"):
        text = path.read_text()
        assert "import django" not in text and "from django" not in text, path
        assert "from studio" not in text and "import studio" not in text, path


def test_the_host_imports_only_the_standard_library_at_start():
    code = (
        "import sys, runpy; sys.argv=['host']; "
        f"ns = runpy.run_path({str(ENGINE / 'host.py')!r}, run_name='not_main'); "
        "heavy = {'pandas', 'numpy', 'yaml', 'psutil', 'mlflow'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
