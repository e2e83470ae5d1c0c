"""Review web app through Flask's test client: what it shows, what it refuses, and that refusals write nothing."""

from __future__ import annotations

import argparse
import io
import json

import numpy as np
import pytest
from PIL import Image
from test_review_decisions import H, W, write_review_manifest

from refine_iqa.io_utils import load_rgb, save_image
from refine_iqa.review import cli as review_cli
from refine_iqa.review import create_app, load_decisions, register_cli
from refine_iqa.review.app import EXTENSION_KEY, host_name


@pytest.fixture
def env(tmp_path):
    manifest = write_review_manifest(tmp_path, 5, oversized=True, manifest_rejected=True)
    app = create_app(manifest, tmp_path / "dec.jsonl", reviewer="alice", batch="all", max_delete_frac=0.2,
                     image_root=tmp_path)
    yield app, app.test_client(), tmp_path
    app.extensions[EXTENSION_KEY].close()


def _human_lines(path):
    return [json.loads(x) for x in path.read_text().splitlines() if json.loads(x)["event"] != "auto"]


def test_page_and_state(env):
    app, c, tmp = env
    r = c.get("/")
    assert r.status_code == 200 and b"review.js" in r.data
    assert "script-src 'self'" in r.headers["Content-Security-Policy"] and r.headers["X-Frame-Options"] == "DENY"
    st = c.get("/api/state").get_json()
    it = st["item"]
    assert (it["id"], it["object"], it["family_name"], it["severity"], it["level"]) == \
        ("img-1", "red circle", "blur", "slight", 1)
    assert it["box"] == [10, 8, 70, 60] and (it["width"], it["height"]) == (W, H)
    assert it["box_frac"] == round(60 * 52 / (W * H), 4)  # 3120 / 9600 = 0.325
    p = st["progress"]
    assert (p["total"], p["reviewed"], p["remaining"], p["deleted"], p["max_deletions"], p["auto_removed"],
            p["removed_in_manifest"]) == (5, 0, 5, 0, 1, 1, 1)
    assert [(f["name"], f["total"]) for f in p["per_family"]] == [("blur", 2), ("noise", 1), ("underexposure", 1),
                                                                    ("pixelate", 1)]
    assert st["mode"] == "review" and st["can_delete"] and not st["can_go_back"]


def test_images_are_the_manifest_pixels(env):
    _, c, tmp = env
    for role, folder in (("dist", "dist"), ("ref", "ref")):
        r = c.get(f"/image/img-2/{role}")
        assert r.status_code == 200 and r.mimetype == "image/png"
        got = np.asarray(Image.open(io.BytesIO(r.data)).convert("RGB"))
        assert np.array_equal(got, load_rgb(tmp / folder / "img-2.png"))


def test_images_are_sent_as_file_bytes_with_prefetch_of_the_next_items(env, monkeypatch):
    """Issue 13: a usable PNG/JPEG is sent as stored (no decode, no re-encode); the state names the next
    items' images so the page can load them ahead."""
    from refine_iqa.review import service as service_mod

    _, c, tmp = env
    monkeypatch.setattr(service_mod, "load_rgb", lambda *a, **k: pytest.fail("decoded a servable file"))
    r = c.get("/image/img-2/dist")
    assert r.status_code == 200 and r.data == (tmp / "dist" / "img-2.png").read_bytes()
    Image.fromarray(load_rgb(tmp / "ref" / "img-2.png")).save(tmp / "ref" / "img-2.png", format="JPEG")
    r = c.get("/image/img-2/ref")  # a JPEG reference (synthesis links the source JPEG) keeps its bytes
    assert r.status_code == 200 and r.mimetype == "image/jpeg"
    assert r.data == (tmp / "ref" / "img-2.png").read_bytes()
    assert c.get("/api/state").get_json()["prefetch"] == [
        "/image/img-2/dist", "/image/img-2/ref", "/image/img-3/dist", "/image/img-3/ref"]


# At least ten path-traversal and malformed-request patterns; every one refused with a JSON error, none writes.
REFUSED_GETS = [
    "/image/../manifest.jsonl",
    "/image/%2e%2e/%2e%2e/etc/passwd",
    "/image/img-1/..%2f..%2fmanifest.jsonl",
    "/image/img-1%2fdist/ref",  # encoded slash
    "/image//etc/passwd/dist",  # absolute path
    "/image/%2Fetc%2Fpasswd/dist",
    "/image/img-1%00/dist",  # null byte
    "/image/img-1/dist%00.png",
    "/image/..%5c..%5cmanifest.jsonl/dist",  # encoded backslashes
    "/static/../manifest.jsonl",
    "/static/%2e%2e/app.py",
    "/static/..%2f..%2fmanifest.jsonl",
    "/image/nope/dist",  # unknown id
    "/image/img-1/manifest",  # unknown role
    "/image/img-big/dist",  # removed before review: not part of the batch
    "/image/img-gone/ref",  # rejected in the manifest
    "/etc/passwd",
    "/review_decisions/all.jsonl",
]


@pytest.mark.parametrize("url", REFUSED_GETS)
def test_no_path_traversal_or_arbitrary_reads(env, url):
    _, c, tmp = env
    r = c.get(url)
    assert r.status_code == 404, url
    assert r.mimetype == "application/json" and "error" in r.get_json()
    assert b"Traceback" not in r.data and b"red circle" not in r.data and b"root:" not in r.data


BAD_POSTS = [  # (kwargs for client.open, expected status)
    (dict(method="POST", data="action=accept&item_id=img-1", content_type="application/x-www-form-urlencoded"), 415),
    (dict(method="POST", data="{not json", content_type="application/json"), 400),
    (dict(method="POST", data="[1, 2]", content_type="application/json"), 400),
    (dict(method="POST", data='"accept"', content_type="application/json"), 400),
    (dict(method="POST", data=json.dumps({"action": "accept", "item_id": "img-1", "pad": "x" * 5000}),
          content_type="application/json"), 413),  # oversized body
    (dict(method="POST", json={"action": "approve", "item_id": "img-1"}), 400),  # bad decision value
    (dict(method="POST", json={"action": "delete", "item_id": "img-1", "reason": "ugly"}), 400),
    (dict(method="POST", json={"action": "delete", "item_id": "img-1"}), 400),  # a deletion needs a reason
    (dict(method="POST", json={"action": "accept", "item_id": 7}), 400),
    (dict(method="POST", json={"action": "accept"}), 400),
    (dict(method="POST", json={"action": "accept", "item_id": "img-1", "path": "/etc/passwd"}), 400),
    (dict(method="POST", json={"action": "accept", "item_id": "../../etc/passwd"}), 409),  # unknown id
    (dict(method="POST", json={"action": "accept", "item_id": "img-3"}), 409),  # not the item on screen
    (dict(method="POST", json={"action": "accept", "item_id": "img-1"},
          headers={"Origin": "http://evil.example"}), 403),
    (dict(method="POST", json={"action": "accept", "item_id": "img-1"}, headers={"Host": "evil.example"}), 400),
    (dict(method="GET", headers={"Host": "rebind.example:8765"}), 400),  # DNS rebinding
    (dict(method="GET"), 405),
    (dict(method="DELETE"), 405),
    (dict(method="PUT", json={"action": "accept", "item_id": "img-1"}), 405),
]


@pytest.mark.parametrize("kwargs, status", BAD_POSTS, ids=[f"{i}-{s}" for i, (_, s) in enumerate(BAD_POSTS)])
def test_malformed_actions_refused_and_nothing_written(env, kwargs, status):
    app, c, tmp = env
    r = c.open("/api/action", **kwargs)
    assert r.status_code == status, r.data
    assert r.mimetype == "application/json" and r.get_json()["error"]
    assert b"Traceback" not in r.data
    assert _human_lines(tmp / "dec.jsonl") == []
    assert c.get("/api/state").get_json()["item"]["id"] == "img-1"


def test_wrong_method_on_state_and_image(env):
    _, c, _ = env
    assert c.put("/api/state").status_code == 405
    assert c.post("/image/img-1/dist").status_code == 405


def test_deletion_limit_refused_with_message(env):
    _, c, tmp = env
    ok = c.post("/api/action", json={"action": "delete", "item_id": "img-1", "reason": "object_mismatch"})
    assert ok.status_code == 200
    st = ok.get_json()["state"]
    assert st["item"]["id"] == "img-2" and not st["can_delete"]
    assert st["limit_message"].startswith("Deletion limit reached: 1 of 5 items are already deleted")
    r = c.post("/api/action", json={"action": "delete", "item_id": "img-2", "reason": "other"})
    assert r.status_code == 409 and r.get_json()["code"] == "limit_reached"
    assert "at most 1 may be" in r.get_json()["error"]
    lines = _human_lines(tmp / "dec.jsonl")
    assert [(x["item_id"], x["status"], x["reason"], x["by"]) for x in lines] == [
        ("img-1", "rejected", "object_mismatch", "alice")]
    assert load_decisions(tmp / "dec.jsonl")["img-big"]["rule"] == "box_over_90pct"


def test_unusable_image_gives_422_naming_the_file(env):
    _, c, tmp = env
    (tmp / "dist" / "img-3.png").write_bytes(b"not a png at all")
    r = c.get("/image/img-3/dist")
    assert r.status_code == 422 and "img-3.png: not_an_image" in r.get_json()["error"]
    save_image(tmp / "ref" / "img-3.png", np.zeros((H + 10, W, 3), np.uint8))
    r = c.get("/image/img-3/ref")
    assert r.status_code == 422 and f"image is {W}x{H + 10} but manifest line 3 says {W}x{H}" in r.get_json()["error"]


def test_internal_error_is_json_without_traceback(env):
    app, c, _ = env

    def boom(*a, **k):
        raise RuntimeError("secret detail")

    app.extensions[EXTENSION_KEY].state = boom
    r = c.get("/api/state")
    assert r.status_code == 500 and r.mimetype == "application/json"
    assert b"Traceback" not in r.data and b"secret detail" not in r.data


def test_names_are_escaped_in_the_page(tmp_path):
    manifest = write_review_manifest(tmp_path, 2, oversized=False)
    app = create_app(manifest, None, reviewer="<script>alert(1)</script>", batch="all", max_delete_frac=0.2,
                     image_root=tmp_path)
    try:
        html = app.test_client().get("/").data
        assert b"<script>alert(1)" not in html and b"&lt;script&gt;alert(1)" in html
    finally:
        app.extensions[EXTENSION_KEY].close()


class _FakeServer:
    """Stands in for werkzeug's server so the CLI's binding and messages are checked without listening."""

    calls = []

    def __init__(self, host, port, app, threaded):
        _FakeServer.calls.append((host, port, threaded))
        self.server_port = 54321

    def serve_forever(self):
        raise KeyboardInterrupt

    def server_close(self):
        pass


def test_cli_binds_loopback_by_default_and_warns_otherwise(tmp_path, monkeypatch, capsys):
    import werkzeug.serving

    manifest = write_review_manifest(tmp_path, 2, oversized=False)
    monkeypatch.setattr(werkzeug.serving, "make_server", _FakeServer)
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers())
    args = parser.parse_args(["review", str(manifest), "--reviewer", "alice", "--image-root", str(tmp_path),
                              "--port", "0"])
    assert (args.host, args.max_delete_frac, args.batch) == ("127.0.0.1", 0.2, "all")
    assert args.func(args) == 0
    out, err = capsys.readouterr()
    assert _FakeServer.calls[-1] == ("127.0.0.1", 0, True)
    assert "http://127.0.0.1:54321/" in out and "0/2 reviewed" in out and "WARNING" not in err
    args = parser.parse_args(["review", str(manifest), "--reviewer", "alice", "--image-root", str(tmp_path),
                              "--host", "0.0.0.0"])
    assert args.func(args) == 0  # the first server released the decisions file lock
    out, err = capsys.readouterr()
    assert _FakeServer.calls[-1][0] == "0.0.0.0" and "WARNING: listening on 0.0.0.0" in err
    assert review_cli.is_loopback("::1") and review_cli.is_loopback("localhost")
    assert not review_cli.is_loopback("10.0.0.1")
    args = parser.parse_args(["review", str(tmp_path / "missing.jsonl"), "--reviewer", "alice"])
    assert args.func(args) == 2 and "manifest not found" in capsys.readouterr().err


def test_host_check_accepts_loopback_names_only(tmp_path):
    manifest = write_review_manifest(tmp_path, 2, oversized=False)
    app = create_app(manifest, None, reviewer="alice", image_root=tmp_path, allowed_hosts=["review.lab"])
    try:
        c = app.test_client()
        for host, status in [("127.0.0.1:8765", 200), ("localhost", 200), ("[::1]:8765", 200), ("review.lab:80", 200),
                             ("REVIEW.LAB", 200), ("evil.example", 400), ("127.0.0.1.evil.example", 400),
                             ("[::1", 400), ("", 400)]:
            assert c.get("/api/state", headers={"Host": host}).status_code == status, host
    finally:
        app.extensions[EXTENSION_KEY].close()
    assert host_name("[::1]:8765") == "::1" and host_name("Localhost:80") == "localhost"
    assert host_name("a:b:c") == "a:b:c"  # a bare IPv6 literal without brackets is not split at a colon
