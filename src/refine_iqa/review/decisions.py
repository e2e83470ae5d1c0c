"""The review decisions store: an append-only JSON Lines log, one fsync'd line per event.

Why a log and not a table: every key press that changes anything is one line, written and fsync'd before the
server answers, so a killed server or a closed browser loses nothing, and replaying the log rebuilds the
exact screen the reviewer left (including where "back" had taken them). A crash can at worst leave a torn,
unacknowledged last line; it is dropped with a warning. One file belongs to one batch; a lock file next to
it keeps a second server off the same file, and reviewers of other batches write other files.

Event lines (`v` is the format version):
  {"v":1,"event":"decision","item_id":..,"status":"accepted"|"rejected","reason":code|null,"by":..,
   "batch":..,"phase":"review"|"verify","verified":bool,"rule":null,"ts":..}
  {"v":1,"event":"auto", ... "status":"rejected","by":"auto","rule":"box_over_90pct","reason":text}
  {"v":1,"event":"skip"|"back", "item_id":.., "by":.., "batch":.., "phase":.., "ts":..}
For "back", item_id and phase name where the reviewer went TO. `load_decisions` keeps decision and auto
lines only, the last one per item winning.
"""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

from refine_iqa.io_utils import append_jsonl

FORMAT_VERSION = 1
EVENT_KINDS = ("decision", "auto", "skip", "back")
STATUSES = ("accepted", "rejected")
PHASES = ("review", "verify")
# Reject reasons offered on screen (keys 1, 2, 3), stored as the code.
REASONS = {"object_mismatch": "object/name mismatch", "not_perceptible": "distortion not perceptible",
           "other": "other"}
AUTO_BY = "auto"
_TAIL_BLOCK = 1 << 16  # bytes read at a time when looking for a torn last line


class DecisionFileError(ValueError):
    pass


class StoreLockedError(RuntimeError):
    pass


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fail(where: str, field: str, msg: str) -> None:
    raise DecisionFileError(f"{where}: field '{field}' {msg}")


def validate_event(rec: object, where: str) -> dict:
    """Check one event line; raise DecisionFileError naming `where` (file: line N) and the field."""
    if not isinstance(rec, dict):
        raise DecisionFileError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    if rec.get("v") != FORMAT_VERSION:
        _fail(where, "v", f"must be {FORMAT_VERSION}, got {rec.get('v')!r} (written by another version?)")
    kind = rec.get("event")
    if kind not in EVENT_KINDS:
        _fail(where, "event", f"must be one of {', '.join(EVENT_KINDS)}, got {kind!r}")
    for key in ("item_id", "by", "batch"):
        if not isinstance(rec.get(key), str) or not rec[key]:
            _fail(where, key, f"must be a non-empty string, got {rec.get(key)!r}")
    if kind == "auto":
        if rec.get("status") != "rejected" or rec.get("by") != AUTO_BY:
            _fail(where, "status", "of an auto event must be 'rejected' by 'auto'")
        if not isinstance(rec.get("rule"), str) or not rec["rule"]:
            _fail(where, "rule", f"of an auto event must name the rule, got {rec.get('rule')!r}")
        return rec
    if rec.get("phase") not in PHASES:
        _fail(where, "phase", f"must be one of {', '.join(PHASES)}, got {rec.get('phase')!r}")
    if kind != "decision":
        return rec
    if rec["by"] == AUTO_BY:
        _fail(where, "by", "'auto' is reserved for automatic rules")
    status = rec.get("status")
    if status not in STATUSES:
        _fail(where, "status", f"must be one of {', '.join(STATUSES)}, got {status!r}")
    reason = rec.get("reason")
    if status == "rejected" and reason not in REASONS:
        _fail(where, "reason", f"of a rejection must be one of {', '.join(REASONS)}, got {reason!r}")
    if status == "accepted" and reason is not None:
        _fail(where, "reason", f"of an acceptance must be null, got {reason!r}")
    if not isinstance(rec.get("verified"), bool):
        _fail(where, "verified", f"must be true or false, got {rec.get('verified')!r}")
    return rec


def iter_events(path: str | os.PathLike) -> Iterator[dict]:
    """The events of one decisions file in order, validated, each with `_line` (1-based) added; read line by
    line, so memory does not grow with the file.

    A last line without its newline that does not parse is the trace of a crash mid-write (the server never
    acknowledged it): it is skipped with a warning. Any other bad line is an error naming file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: decisions file not found")
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            where = f"{path}: line {lineno}"
            if raw.endswith(b"\n"):
                yield _parse_line(raw, where, lineno)
                continue
            try:  # text after the last newline: the last line of the file
                ev = _parse_line(raw, where, lineno)
            except DecisionFileError as e:
                warnings.warn(f"{where}: ignoring an incomplete last line ({e}); "
                              "it was being written when the server stopped", stacklevel=2)
                return
            yield ev


def read_events(path: str | os.PathLike) -> list[dict]:
    """All events of one decisions file as a list (see `iter_events`)."""
    return list(iter_events(path))


def _parse_line(raw: bytes, where: str, lineno: int) -> dict:
    try:
        rec = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DecisionFileError(f"{where}: invalid JSON ({e}); fix or delete that line") from None
    rec = validate_event(rec, where)
    rec["_line"] = lineno
    return rec


def _expand(path_or_paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    if isinstance(path_or_paths, (str, os.PathLike)):
        path_or_paths = [path_or_paths]
    out: list[Path] = []
    for p in path_or_paths:
        p = Path(p)
        if p.is_dir():
            out.extend(sorted(q for q in p.glob("*.jsonl") if q.is_file()))
        else:
            out.append(p)
    return out


def load_decisions(path_or_paths) -> dict[str, dict]:
    """item id -> {"status", "reason", "by", "verified", "rule"} from one or more decisions files.

    Takes a file, a folder (its *.jsonl files in name order) or a list of either. Lines are read file by
    file in the order given, and for each item the LAST decision read wins. Skips and moves are not decisions.
    """
    out: dict[str, dict] = {}
    for path in _expand(path_or_paths):
        for ev in iter_events(path):
            if ev["event"] == "decision":
                out[ev["item_id"]] = {"status": ev["status"], "reason": ev["reason"], "by": ev["by"],
                                      "verified": ev["verified"], "rule": None}
            elif ev["event"] == "auto":
                out[ev["item_id"]] = {"status": "rejected", "reason": ev.get("reason"), "by": AUTO_BY,
                                      "verified": False, "rule": ev["rule"]}
    return out


class DecisionStore:
    """One batch's decisions file, locked for this process while open.

    Opening reads the file once, line by line, checks every event and hands each to `on_event` (the review
    service replays it); the events are not kept in memory (`events` reads them from the file when asked).
    """

    def __init__(self, path: str | os.PathLike, batch: str, on_event: Callable[[dict], None] | None = None):
        self.path = Path(path)
        self.batch = batch
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._take_lock()
        try:
            created = not self.path.exists()
            if created:
                self.path.touch()
                _fsync_dir(self.path.parent)  # the new file's name survives a power cut too
            self._drop_torn_tail()
            self._last_line = 0  # line number of the last event, for the next one's `_line`
            for ev in iter_events(self.path):
                if ev["batch"] != batch:
                    raise DecisionFileError(
                        f"{self.path}: line {ev['_line']}: this file holds batch {ev['batch']!r}, not {batch!r}; "
                        "give each batch its own --decisions file (or pass the matching --batch)")
                self._last_line = ev["_line"]
                if on_event is not None:
                    on_event(ev)
        except BaseException:
            self.close()
            raise

    @property
    def events(self) -> list[dict]:
        """Every event of the file, read from disk now."""
        return read_events(self.path)

    def _take_lock(self) -> int:
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StoreLockedError(f"{self.path} is open in another review server (pid {holder}); stop it, or "
                                   "review another batch with its own --decisions file") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return fd

    def _drop_torn_tail(self) -> None:
        """Cut an incomplete last line (crash mid-append) so the next append starts on a line of its own.
        Reads only the file's tail."""
        with open(self.path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            keep, pos = 0, size
            while pos > 0:  # back to the last newline, a block at a time
                step = min(_TAIL_BLOCK, pos)
                pos -= step
                f.seek(pos)
                block = f.read(step)
                if pos + step == size and block.endswith(b"\n"):
                    return  # ends with a newline (or is empty): nothing torn
                nl = block.rfind(b"\n")
                if nl >= 0:
                    keep = pos + nl + 1
                    break
            if size == 0:
                return
            f.seek(keep)
            tail = f.read()
        try:
            _parse_line(tail, "", 0)
            with open(self.path, "ab") as f:  # a whole event that only lacks its newline: complete it
                f.write(b"\n")
                f.flush()
                os.fsync(f.fileno())
            return
        except DecisionFileError:
            pass
        warnings.warn(f"{self.path}: dropping an incomplete last line ({size - keep} bytes) left by a crash "
                      "while it was being written; it had not been acknowledged", stacklevel=3)
        with open(self.path, "r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())

    def append(self, event: dict) -> dict:
        """Validate and write durably; return the event as written (with `_line`)."""
        if self._lock_fd is None:
            raise RuntimeError(f"{self.path}: the decisions store is closed")
        rec = {"v": FORMAT_VERSION, **event, "batch": self.batch}
        rec.setdefault("ts", now_iso())
        validate_event(dict(rec), f"{self.path}: new event")
        append_jsonl(self.path, rec)
        self._last_line += 1
        rec["_line"] = self._last_line
        return rec

    def close(self) -> None:
        if getattr(self, "_lock_fd", None) is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
