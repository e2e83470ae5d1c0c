"""Review app at scale (issue 13): items are read from the manifest on demand, events are not kept in memory.

Memory per item is checked with tracemalloc (deterministic Python allocations), not RSS; the RSS figures at
5,000 and 20,000 items are in docs/PERFORMANCE.md (benchmarks/bench_scale.py).
"""

from __future__ import annotations

import json
import tracemalloc

import pytest
from test_review_decisions import write_review_manifest

from refine_iqa.review import create_app, decisions
from refine_iqa.review.app import EXTENSION_KEY
from refine_iqa.review.decisions import DecisionStore, read_events
from refine_iqa.review.manifest import ManifestError, ManifestIndex, parse_item
from refine_iqa.review.service import ReviewService, ReviewSettings


def _grow(tmp_path, n: int, name: str):
    """A manifest of `n` items (all on the images of a 3-item manifest, a non-ASCII object name on every
    third line, blank lines between) and a decisions log with one acceptance per item."""
    base = write_review_manifest(tmp_path, 3, oversized=False)
    recs = [json.loads(x) for x in base.read_text().splitlines()]
    manifest = tmp_path / f"{name}.jsonl"
    lines = []
    for i in range(n):
        rec = {**recs[i % 3], "id": f"it-{i:05d}"}
        if i % 3 == 1:
            rec["object"] = "café crème ☕"  # multi-byte UTF-8: byte offsets differ from character offsets
        lines.append(json.dumps(rec, ensure_ascii=False) + ("\n\n" if i % 5 == 0 else "\n"))
    manifest.write_text("".join(lines), encoding="utf-8")
    log = tmp_path / f"{name}-decisions.jsonl"
    log.write_text("".join(json.dumps({"v": 1, "event": "decision", "item_id": f"it-{i:05d}", "status": "accepted",
                                       "reason": None, "by": "alice", "batch": "all", "phase": "review",
                                       "verified": False, "rule": None, "ts": "t"}) + "\n" for i in range(n)))
    return manifest, log


def test_item_read_on_demand_equals_the_manifest_line(tmp_path):
    manifest, _ = _grow(tmp_path, 40, "m")
    index = ManifestIndex(manifest, tmp_path)
    lines = manifest.read_text(encoding="utf-8").splitlines()
    expected = [parse_item(json.loads(x), manifest, k, tmp_path) for k, x in enumerate(lines, 1) if x.strip()]
    assert [index.item(i) for i in range(len(index))] == expected  # every field, line number included
    assert index.item(1).object == "café crème ☕" and index.item(1).dist_path == tmp_path / "dist" / "img-2.png"
    svc = ReviewService(manifest, tmp_path / "d.jsonl", ReviewSettings(reviewer="alice", image_root=tmp_path))
    st = svc.state()["item"]
    assert (st["id"], st["object"], st["box"], st["family"]) == ("it-00000", expected[0].object,
                                                                list(expected[0].box), expected[0].family)
    svc.act("accept", "it-00000")
    assert svc.state()["item"]["object"] == "café crème ☕"
    data, mime = svc.image_file("it-00004", "ref")
    assert mime == "image/png" and data == (tmp_path / "ref" / "img-2.png").read_bytes()
    svc.close()


def test_an_edited_manifest_stops_the_review_with_a_clear_message(tmp_path):
    manifest, _ = _grow(tmp_path, 6, "m")
    app = create_app(manifest, tmp_path / "d.jsonl", reviewer="alice", image_root=tmp_path)
    c = app.test_client()
    assert c.get("/api/state").status_code == 200
    manifest.write_text(manifest.read_text(encoding="utf-8").replace("it-0000", "xx-0000"), encoding="utf-8")
    r = c.get("/api/state")
    assert r.status_code == 500 and "changed on disk after the review server read it" in r.get_json()["error"]
    app.extensions[EXTENSION_KEY].close()


def _traced_service(manifest, log, tmp_path):
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        svc = ReviewService(manifest, log, ReviewSettings(reviewer="alice", image_root=tmp_path))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    svc.close()
    return svc, held


def test_memory_per_item_stays_small(tmp_path):
    """What the service keeps per item (manifest + one decision each): ~7 KB before issue 13's fix, now
    a few hundred bytes. Measured as the difference between 300 and 1,200 items, so fixed costs cancel."""
    small, big = (_traced_service(*_grow(tmp_path, n, f"m{n}"), tmp_path) for n in (300, 1200))
    assert big[0].state()["progress"]["reviewed"] == 1200  # the log was replayed
    per_item = (big[1] - small[1]) / 900
    assert per_item < 800, f"{per_item:.0f} bytes per item held by the review service"


def test_torn_tail_found_across_read_blocks(tmp_path, monkeypatch):
    """The store looks for a torn last line from the end of the file, a block at a time (not reading it all)."""
    monkeypatch.setattr(decisions, "_TAIL_BLOCK", 7)
    path = tmp_path / "d.jsonl"
    store = DecisionStore(path, "b")
    for i in range(3):
        store.append({"event": "skip", "item_id": f"x{i}", "by": "alice", "phase": "review"})
    store.close()
    good = path.read_bytes()
    path.write_bytes(good + b'{"v": 1, "event": "decision", "item_id": "x9", "st')  # longer than a block
    with pytest.warns(UserWarning, match="dropping an incomplete last line"):
        store = DecisionStore(path, "b")
    assert path.read_bytes() == good
    ev = store.append({"event": "skip", "item_id": "x3", "by": "alice", "phase": "review"})
    store.close()
    assert ev["_line"] == 4 and [e["item_id"] for e in read_events(path)] == ["x0", "x1", "x2", "x3"]
    path.write_bytes(b'{"v": 1, "event": "deci')  # a file that is one torn line
    with pytest.warns(UserWarning, match="dropping an incomplete last line"):
        DecisionStore(path, "b").close()
    assert path.read_bytes() == b""


def test_manifest_line_that_is_not_utf8_is_named(tmp_path):
    manifest, _ = _grow(tmp_path, 3, "m")
    manifest.write_bytes(manifest.read_bytes() + b'{"id": "\xff"}\n')
    with pytest.raises(ManifestError, match=r"line 5: invalid JSON \(not UTF-8"):
        ManifestIndex(manifest, tmp_path)
