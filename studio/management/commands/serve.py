"""`manage.py serve`: web server and worker cluster together, in the foreground."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

# qcluster lets each worker finish its task before it exits; a long job would
# keep it waiting, so the wait is bounded (and a second Ctrl-C cuts it short).
STOP_GRACE_S = 30
POLL_S = 0.2


class Command(BaseCommand):
    help = (
        "Run the studio's web server (runserver) and its worker cluster (qcluster)"
        " until Ctrl-C or SIGTERM; when either exits, the other is stopped."
    )
    # runserver and qcluster run the system checks themselves.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000)"
        )

    def handle(self, *args: Any, port: int, **options: Any) -> None:
        received: list[int] = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda number, _frame: received.append(number))
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        address = f"127.0.0.1:{port}"
        children = {
            "worker cluster": _start([*manage, "qcluster"]),
            "web server": _start([*manage, "runserver", "--noreload", address]),
        }
        self.stdout.write(
            f"Serving the studio on http://{address}/ with its worker cluster;"
            " Ctrl-C stops both."
        )
        while not received and all(p.poll() is None for p in children.values()):
            time.sleep(POLL_S)
        ended = {
            name: p.returncode for name, p in children.items() if p.poll() is not None
        }
        self.stdout.write(
            "Stopping the web server and the worker cluster (Ctrl-C again to force) ..."
        )
        self._stop(list(children.values()), received)
        if not received:
            name, code = next(iter(ended.items()))
            raise CommandError(f"the {name} exited (code {code}); stopped the other")
        self.stdout.write("Stopped.")

    def _stop(self, children: list[subprocess.Popen], received: list[int]) -> None:
        """SIGTERM each child's main process only: qcluster stops its own
        workers, and a signal to its whole group can leave it stuck stopping."""
        signals_before = len(received)
        for child in children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        while any(child.poll() is None for child in children):
            if time.monotonic() > deadline or len(received) > signals_before:
                self.stderr.write("Killing what has not stopped.")
                for child in children:
                    if child.poll() is None:
                        os.killpg(child.pid, signal.SIGKILL)
                break
            time.sleep(POLL_S)
        for child in children:
            child.wait()


def _start(command: list[str]) -> subprocess.Popen:
    # A session of its own: Ctrl-C in the terminal reaches only this command,
    # which then stops each child in order.
    return subprocess.Popen(command, start_new_session=True)
