"""The output file: finished mini-batches' parts appended in order, exactly once."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import BinaryIO

from .checkpoint import Checkpoint
from .jobfolder import JobFolder
from .state import BatchState, MiniBatchLedger

CHECKPOINT_EVERY_S = 0.5


class OrderedOutput:
    """Appends each finished mini-batch's part once, in order, and checkpoints.

    With `path` None (output_action summary_only) only the checkpoint moves.
    """

    def __init__(
        self,
        path: Path | None,
        folder: JobFolder,
        checkpoint: Checkpoint,
        ledger: MiniBatchLedger,
        total: int,
    ) -> None:
        self.folder = folder
        self.checkpoint = checkpoint
        self.ledger = ledger
        self.total = total
        self._file: BinaryIO | None = None
        self._saved_at = 0.0
        self._unsaved = False
        if path is not None:
            # Rows past the checkpoint came from a run that died before it
            # checkpointed them; their mini-batches run again.
            self._file = open(path, "ab")  # noqa: SIM115 - open for the whole job
            self._file.truncate(checkpoint.output_bytes)
            self._file.seek(checkpoint.output_bytes)

    def assemble(self, final: bool = False) -> None:
        """Append every newly finished mini-batch at the head of the order.

        The checkpoint is saved after the parts are appended, so a crash in
        between re-runs those mini-batches and their rows are cut off first.
        It is saved at most every CHECKPOINT_EVERY_S (and when `final`): a
        save per mini-batch cost a third of a fast job's wall time, and a lag
        only means a little more work runs again after a crash.
        """
        checkpoint, advanced = self.checkpoint, False
        while checkpoint.next_index < self.total:
            index = checkpoint.next_index
            state, succeeded, failed = self.ledger.outcome(index)
            if state not in (BatchState.SUCCEEDED, BatchState.FAILED):
                break
            if self._file is not None and state is BatchState.SUCCEEDED:
                self._append(self.folder.part_file(index))
            checkpoint.failed += state is BatchState.FAILED
            checkpoint.items_succeeded += succeeded
            checkpoint.items_failed += failed
            checkpoint.next_index += 1
            advanced = True
        if advanced and self._file is not None:
            self._file.flush()
            checkpoint.output_bytes = self._file.tell()
        self._unsaved |= advanced
        now = time.monotonic()
        if self._unsaved and (final or now - self._saved_at >= CHECKPOINT_EVERY_S):
            checkpoint.save(self.folder.checkpoint)
            self._saved_at, self._unsaved = now, False

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def _append(self, part: Path) -> None:
        output, checkpoint = self._file, self.checkpoint
        with open(part, "rb") as source:
            header = source.readline()
            if header.strip() and not checkpoint.header_written:
                output.write(header)
            if header.strip() or not checkpoint.header_written:
                checkpoint.header_written = True
            shutil.copyfileobj(source, output, 1 << 20)
        part.unlink()
