"""The review state machine: which item is on screen, what each key does, and the deletion cap.

The state is a pure function of the event log (`apply` replays it), so a restarted server shows exactly
the item the reviewer left. `check` decides whether a live action is allowed BEFORE it is written.

Modes: "review" (first pass over every item, skipped items come back after the end), "verify" (post-hoc
verification: every item deleted in the first pass is shown again to confirm the deletion or restore it),
"done". A decision moves to the next item still to do, wrapping round; "back" steps to the previous item.

Counts (progress, deletions, items to verify) are kept up to date by `apply`, and the verify list is kept
sorted as items join it, so a request or a replayed event costs no walk over the whole batch (issue 13:
restart time grew with the square of the verify events).
"""

from __future__ import annotations

import bisect
from typing import Sequence

from refine_iqa.review.decisions import REASONS
from refine_iqa.review.manifest import FAMILY_NAMES, BatchItems, ReviewItem


class ActionRefused(Exception):
    """A live action that is not allowed now; `code` is machine-readable, the message is for the screen."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


class ReviewSession:
    def __init__(self, items: Sequence[ReviewItem] | BatchItems, max_deletions: int):
        # Per item in memory: its id, batch position and family (BatchItems); the rest is read on demand.
        self.items = items if isinstance(items, BatchItems) else BatchItems.from_items(items)
        self.order = self.items.ids
        self.index = self.items.index
        self.max_deletions = max_deletions
        # item id -> {"status", "reason", "by", "verified"}; equal decisions share one read-only dict (a batch
        # has a handful of distinct ones), so a decided item costs a dict entry, not a dict.
        self.decisions: dict[str, dict] = {}
        self._shared: dict[tuple, dict] = {}
        self.ever_rejected: set[str] = set()
        self.mode = "review" if self.order else "done"
        self.cursor: str | None = self.order[0] if self.order else None
        # Incremental counters, updated by apply() (see the module docstring).
        self._verify: list[str] = []  # ever_rejected in batch order
        self.deleted = 0
        self.to_verify = 0
        self._families: dict[str, dict] = {}
        for fam in self.items.families():
            row = self._families.setdefault(fam, {"family": fam, "name": FAMILY_NAMES[fam], "total": 0,
                                                  "reviewed": 0, "deleted": 0, "remaining": 0})
            row["total"] += 1
            row["remaining"] += 1

    # ---- derived views ------------------------------------------------------------------------------------
    def status(self, item_id: str) -> str | None:
        d = self.decisions.get(item_id)
        return d["status"] if d else None

    def awaits_verification(self, item_id: str) -> bool:
        d = self.decisions.get(item_id)
        return bool(d) and d["status"] == "rejected" and not d["verified"]

    @property
    def verify_list(self) -> list[str]:
        """Items deleted at some point, in batch order; they stay listed after a restore (back works)."""
        return self._verify

    def position(self, item_id: str, pool: list[str]) -> int:
        """Index of `item_id` in `pool` (the batch order or the verify list) without a linear search."""
        if pool is self.order:
            return self.index[item_id]
        i = bisect.bisect_left(self._verify, self.index[item_id], key=self.index.__getitem__)
        if i == len(self._verify) or self._verify[i] != item_id:
            raise ValueError(f"{item_id!r} is not in the verify list")
        return i

    def can_delete(self, item_id: str | None = None) -> bool:
        item_id = item_id or self.cursor
        return self.status(item_id) == "rejected" or self.deleted < self.max_deletions

    def _next(self, after: str, pool: list[str], wanted) -> str | None:
        """First id in `pool` after `after`, wrapping round and never `after` itself, for which `wanted(id)` holds."""
        i = self.position(after, pool)
        n = len(pool)
        # Walk from i + 1 round to i - 1 without copying the list; in a normal pass the first step succeeds.
        return next((pool[(i + k) % n] for k in range(1, n) if wanted(pool[(i + k) % n])), None)

    def _undecided(self, item_id: str) -> bool:
        return item_id not in self.decisions

    def _finish_review(self) -> None:
        first = next((i for i in self._verify if self.awaits_verification(i)), None)
        self.mode, self.cursor = ("verify", first) if first else ("done", None)

    def _advance(self, after: str) -> None:
        if self.mode == "review":
            nxt = self._next(after, self.order, self._undecided)
            if nxt:
                self.cursor = nxt
            else:
                self._finish_review()
        else:
            nxt = self._next(after, self.verify_list, self.awaits_verification)
            self.mode, self.cursor = ("verify", nxt) if nxt else ("done", None)

    def back_target(self) -> tuple[str, str] | None:
        """(item id, mode) that "back" goes to, or None at the start."""
        if self.mode == "done":
            vl = self.verify_list
            if vl:
                return vl[-1], "verify"
            return (self.order[-1], "review") if self.order else None
        pool = self.order if self.mode == "review" else self.verify_list
        i = self.position(self.cursor, pool)
        return (pool[i - 1], self.mode) if i > 0 else None

    # ---- live checks -------------------------------------------------------------------------------------
    def check(self, action: str, item_id: str, reason: str | None = None) -> None:
        """Raise ActionRefused when `action` on `item_id` is not allowed now. Actions: accept, delete, skip, back."""
        if self.mode == "done" and action != "back":
            raise ActionRefused("done", "Everything in this batch is reviewed and verified; press b to go back.")
        if action != "back" and item_id != self.cursor:
            raise ActionRefused("stale", f"Item {item_id!r} is not the one on screen any more "
                                "(another tab?); the page has been refreshed.")
        if action == "back":
            if self.mode != "done" and item_id != self.cursor:
                raise ActionRefused("stale", "The page was out of date; it has been refreshed.")
            if self.back_target() is None:
                raise ActionRefused("at_start", "This is the first item; there is nothing before it.")
        elif action == "delete":
            # In verification a reason is optional (confirming keeps the first one); the cap holds in both modes.
            if (reason is not None and reason not in REASONS) or (self.mode == "review" and reason is None):
                raise ActionRefused("bad_reason", f"Choose a reason: {', '.join(REASONS)}.")
            if not self.can_delete(item_id):
                raise ActionRefused("limit_reached", self.limit_message())
        elif action == "skip":
            pool, todo = ((self.order, self._undecided) if self.mode == "review"
                          else (self.verify_list, self.awaits_verification))
            if todo(item_id) and self._next(item_id, pool, todo) is None:
                what = "without a decision: accept (a) or delete (d)" if self.mode == "review" else \
                    "to verify: confirm the deletion (d) or restore it (a)"
                raise ActionRefused("last_item", f"This is the last item {what}.")
        elif action != "accept":
            raise ActionRefused("bad_action", f"Unknown action {action!r}.")

    def limit_message(self) -> str:
        restore = ", or go back (b) and restore a deleted one" if self.deleted else ""
        return (f"Deletion limit reached: {self.deleted} of {len(self.order)} items are already deleted in this "
                f"batch (at most {self.max_deletions} may be). Accept (a) or skip (s) this item{restore}.")

    def make_event(self, action: str, item_id: str, reason: str | None, by: str) -> dict:
        """The log line for an allowed action (call `check` first)."""
        if action == "back":
            target, mode = self.back_target()
            return {"event": "back", "item_id": target, "by": by, "phase": mode}
        if action == "skip":
            return {"event": "skip", "item_id": item_id, "by": by, "phase": self.mode}
        verify = self.mode == "verify"
        if action == "accept":
            status, reason = "accepted", None
        else:
            status = "rejected"
            if verify:  # confirming keeps the reason given in the first pass unless a new one is chosen
                reason = reason if reason in REASONS else (self.decisions.get(item_id) or {}).get("reason") or "other"
        return {"event": "decision", "item_id": item_id, "status": status, "reason": reason, "by": by,
                "phase": self.mode, "verified": verify, "rule": None}

    # ---- state transitions (live and replay) -----------------------------------------------------------------
    def apply(self, ev: dict) -> None:
        pos = self.index.get(ev["item_id"])
        if pos is None:
            where = f"line {ev['_line']}: " if "_line" in ev else ""
            raise KeyError(f"{where}item {ev['item_id']!r} is not an item of this batch under review")
        item_id = self.order[pos]  # the batch's own string: one copy per item, not one per event
        kind = ev["event"]
        if kind == "back":
            self.cursor, self.mode = item_id, ev["phase"]
        elif kind == "skip":
            self.cursor = item_id
            self._advance(item_id)
        elif kind == "decision":
            self._count(item_id, -1)
            key = (ev["status"], ev["reason"], ev["by"], ev["verified"])
            shared = self._shared.get(key)
            if shared is None:
                shared = self._shared[key] = dict(zip(("status", "reason", "by", "verified"), key))
            self.decisions[item_id] = shared
            self._count(item_id, +1)
            if ev["status"] == "rejected" and item_id not in self.ever_rejected:
                self.ever_rejected.add(item_id)
                bisect.insort(self._verify, item_id, key=self.index.__getitem__)
            self.cursor = item_id
            self._advance(item_id)
        else:
            raise ValueError(f"event {kind!r} does not belong to the review session")

    # ---- progress ------------------------------------------------------------------------------------------------
    def _count(self, item_id: str, sign: int) -> None:
        """Add (+1) or remove (-1) the item's current decision from the counters."""
        d = self.decisions.get(item_id)
        if d is None:
            return
        row = self._families[self.items.family(item_id)]
        row["reviewed"] += sign
        row["remaining"] -= sign
        if d["status"] == "rejected":
            row["deleted"] += sign
            self.deleted += sign
            if not d["verified"]:
                self.to_verify += sign

    def progress(self) -> dict:
        reviewed = len(self.decisions)
        return {"total": len(self.order), "reviewed": reviewed, "remaining": len(self.order) - reviewed,
                "deleted": self.deleted, "max_deletions": self.max_deletions, "to_verify": self.to_verify,
                "per_family": [dict(self._families[f]) for f in sorted(self._families,
                                                                       key=list(FAMILY_NAMES).index)]}

    def upcoming(self, count: int) -> list[str]:
        """The next `count` items the reviewer will see after the current one (for image prefetch)."""
        if self.cursor is None:
            return []
        pool, todo = ((self.order, self._undecided) if self.mode == "review"
                      else (self._verify, self.awaits_verification))
        out, i, n = [], self.position(self.cursor, pool), len(pool)
        for k in range(1, n):  # stops after `count` finds; in a normal pass those are the next ones
            cand = pool[(i + k) % n]
            if todo(cand):
                out.append(cand)
                if len(out) == count:
                    break
        return out
