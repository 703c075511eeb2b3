"""What a job committed to its output, in order, so a later run resumes from there."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import JobFolderError
from .jobfolder import write_atomic


@dataclass
class Checkpoint:
    """Mini-batches 0..next_index-1 are final and their rows are in the output.

    Rewritten (atomically) each time the ordered output grows, so a resumed
    run truncates the output to `output_bytes` and goes on from `next_index`.
    """

    total: int
    mini_batch_size: str
    next_index: int = 0
    output_bytes: int = 0
    header_written: bool = False
    failed: int = 0
    items_succeeded: int = 0
    items_failed: int = 0

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps(dataclasses.asdict(self)) + "\n")

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        """Raises JobFolderError when the job left nothing to resume from."""
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise JobFolderError(
                f"job folder {path.parent.parent} has nothing to resume: the job"
                " completed, or never started"
            ) from None
        except (ValueError, TypeError) as exc:
            raise JobFolderError(f"cannot resume: {path} is damaged ({exc})") from exc

    def check_matches(self, total: int, mini_batch_size: str) -> None:
        if (self.total, self.mini_batch_size) != (total, mini_batch_size):
            raise JobFolderError(
                f"cannot resume: the job had {self.total} mini-batches of"
                f" {self.mini_batch_size}, now it would have {total} of"
                f" {mini_batch_size}; resume needs the same input and"
                " mini_batch_size"
            )
