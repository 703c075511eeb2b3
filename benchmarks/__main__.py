"""Entry point of `python -m benchmarks`; imports only the standard library up front."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    # Imported here, not at module level: spawned pool workers may import this
    # package and must pay no more imports than an engine scoring host does.
    from benchmarks.cli import main

    sys.exit(main())
