"""Resumable evaluation: finished predictions appended per batch to a JSON Lines file, keyed by item.

Line 1 is `{"fingerprint": ...}` (model files, settings, data): a journal written under another fingerprint is
discarded, so a changed model never reuses predictions. Every further line is one finished item,
`{"key": <item key>, ...prediction}`, written whole with one write + fsync per batch. A job killed mid-write
leaves at most a partial LAST line: it is cut off on resume (and that item is simply run again).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from refine_iqa.io_utils import atomic_write_text, dumps


class PredictionJournal:
    def __init__(self, path: str | os.PathLike, fingerprint: dict):
        self.path = Path(path)
        self.fingerprint = json.loads(dumps(fingerprint))  # normalised as it will read back
        self.done: dict[str, dict] = {}
        self.resumed = 0
        self._load()

    def _start_over(self) -> None:
        atomic_write_text(self.path, dumps({"fingerprint": self.fingerprint}) + "\n")
        self.done = {}

    def _load(self) -> None:
        if not self.path.exists():
            self._start_over()
            return
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        complete, tail = lines[:-1], lines[-1]  # text after the last newline is a partial write
        try:
            header = json.loads(complete[0]) if complete else None
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("fingerprint") != self.fingerprint:
            if header is not None:
                print(f"[journal] {self.path}: written by another model or settings; starting over", flush=True)
            self._start_over()
            return
        good = len(complete[0]) + 1
        for lineno, raw in enumerate(complete[1:], 2):
            try:
                rec = json.loads(raw)
                key = str(rec["key"])
            except (ValueError, KeyError, TypeError):
                # A damaged line inside the file (not a partial tail): keep what precedes it, redo the rest.
                print(f"[journal] {self.path}: line {lineno} is damaged; the items after it are run again", flush=True)
                break
            self.done[key] = rec
            good += len(raw) + 1
        if good != len(data) or tail:
            with open(self.path, "r+b") as f:
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())
        self.resumed = len(self.done)
        if self.resumed:
            print(f"[journal] {self.path}: resuming, {self.resumed} items already done", flush=True)

    def append(self, records: list[dict]) -> None:
        """Append finished items (each with "key") in one write, then fsync."""
        if not records:
            return
        text = "".join(dumps(r) + "\n" for r in records)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        for r in json.loads("[" + ",".join(dumps(r) for r in records) + "]"):
            self.done[str(r["key"])] = r

    def discard(self) -> None:
        """Remove the file (once the final result is written atomically elsewhere), and its folder if empty."""
        self.path.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()
        except OSError:  # not empty (other journals or cached results) or already gone
            pass
