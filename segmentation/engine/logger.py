"""Rank-0 run logging: a JSON-lines file, TensorBoard when installed, and plain messages."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


class RunLogger:
    """Appends one JSON object per line to ``<work_dir>/log.jsonl``; mirrors scalars to TensorBoard."""

    def __init__(self, work_dir: Path, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self.path = work_dir / "log.jsonl"
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tb = SummaryWriter(str(work_dir / "tensorboard"))

    def log(self, record: dict[str, Any]) -> None:
        """Write ``record`` (with a timestamp) and its numeric fields to TensorBoard."""
        if not self.enabled:
            return
        record = {"time": round(time.time(), 3), **record}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None and "iter" in record:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("iter", "time"):
                    self._tb.add_scalar(key, value, record["iter"])

    def message(self, text: str) -> None:
        """A human-readable line on stderr (rank 0 only)."""
        if self.enabled:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        """Flush TensorBoard."""
        if self._tb is not None:
            self._tb.close()
