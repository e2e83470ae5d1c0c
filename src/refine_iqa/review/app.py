"""Flask app factory for the human review screen.

Safety rules: images are routed by item id and role (never by a path from the request) and sent only after
their header shows a PNG/JPEG of the manifest's size (anything else is re-encoded from the decoded pixels); every error is a small JSON body with a 4xx/5xx status (debug off, no tracebacks); POSTs
must be same-origin JSON under a small size cap; the Host header must name this server (DNS rebinding).
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from refine_iqa.review.decisions import REASONS
from refine_iqa.review.manifest import ManifestError
from refine_iqa.review.qc import DEFAULT_MAX_BOX_FRAC, DEFAULT_MAX_DELETE_FRAC
from refine_iqa.review.service import ImageUnavailable, ReviewService, ReviewSettings
from refine_iqa.review.session import ActionRefused

MAX_BODY_BYTES = 4096  # an action is under 200 bytes; anything larger is refused before it is read
ACTIONS = ("accept", "delete", "skip", "back")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
EXTENSION_KEY = "refine_iqa_review"

log = logging.getLogger(__name__)


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        self.status = status
        super().__init__(message)


def _error(status: int, message: str, **extra) -> Response:
    resp = jsonify({"error": message, "status": status, **extra})
    resp.status_code = status
    return resp


def host_name(host_header: str) -> str:
    """The name part of a Host header: 'localhost:8765' -> 'localhost', '[::1]:8765' -> '::1'."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def _parse_action(req) -> tuple[str, str | None, str | None]:
    if req.mimetype != "application/json":
        raise BadRequest("send the action as JSON (Content-Type: application/json)", 415)
    body = req.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object like {\"action\": \"accept\", \"item_id\": \"...\"}")
    extra = sorted(set(body) - {"action", "item_id", "reason"})
    if extra:
        raise BadRequest(f"unknown field(s) {extra}; allowed: action, item_id, reason")
    action, item_id, reason = body.get("action"), body.get("item_id"), body.get("reason")
    if action not in ACTIONS:
        raise BadRequest(f"field 'action' must be one of {', '.join(ACTIONS)}, got {action!r}")
    if item_id is not None and not isinstance(item_id, str):
        raise BadRequest(f"field 'item_id' must be a string, got {type(item_id).__name__}")
    if item_id is None and action != "back":
        raise BadRequest("field 'item_id' is required (the id of the item on screen)")
    if reason is not None and reason not in REASONS:
        raise BadRequest(f"field 'reason' must be one of {', '.join(REASONS)}, got {reason!r}")
    return action, item_id, reason


def create_app(manifest_path: str | Path, decisions_path: str | Path | None = None, *, reviewer: str,
               batch: str = "all", max_delete_frac: float = DEFAULT_MAX_DELETE_FRAC,
               max_box_frac: float = DEFAULT_MAX_BOX_FRAC, image_root: str | Path | None = None,
               allowed_hosts: list[str] | None = None) -> Flask:
    """The review web app for one batch of `manifest_path`, writing to `decisions_path`.

    `decisions_path=None` uses <manifest folder>/review_decisions/<batch>.jsonl. `allowed_hosts` are the Host
    names accepted besides loopback ones; pass ["*"] to accept any (only when served beyond localhost).
    The service (app.extensions["refine_iqa_review"]) holds the decisions file lock: call its close() when done.
    """
    service = ReviewService(manifest_path, decisions_path, ReviewSettings(
        reviewer=reviewer, batch=batch, max_delete_frac=max_delete_frac, max_box_frac=max_box_frac,
        image_root=Path(image_root) if image_root is not None else None))
    here = Path(__file__).parent
    app = Flask(__name__, template_folder=str(here / "templates"), static_folder=str(here / "static"),
                static_url_path="/static")
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, PROPAGATE_EXCEPTIONS=False, DEBUG=False,
                      JSON_SORT_KEYS=False)
    # Our own Host check (werkzeug's TRUSTED_HOSTS cannot list IPv6 literals): refuses DNS-rebinding pages.
    trusted = None if allowed_hosts == ["*"] else {h.lower() for h in (*LOOPBACK_HOSTS, *(allowed_hosts or ()))}
    app.debug = False
    app.extensions[EXTENSION_KEY] = service

    @app.before_request
    def _check_host():
        host = request.headers.get("Host", "")
        if trusted is not None and host_name(host) not in trusted:
            return _error(400, f"Host {host!r} is not this review server; open it as http://127.0.0.1:<port>/")

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Content-Security-Policy"] = ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                                   "img-src 'self'; connect-src 'self'; frame-ancestors 'none'")
        if not request.path.startswith(("/image/", "/static/")):
            resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        return _error(e.code or 500, e.description or e.name)

    @app.errorhandler(ManifestError)
    def _manifest_changed(e: ManifestError):  # items are read from the manifest on demand
        log.error("%s", e)
        return _error(500, str(e))

    @app.errorhandler(Exception)
    def _unexpected(e: Exception):
        log.exception("review server error")
        return _error(500, f"internal error ({type(e).__name__}); the decision was not saved, see the server log")

    @app.get("/")
    def index():
        return render_template("index.html", batch=service.settings.batch, reviewer=service.settings.reviewer)

    @app.get("/api/state")
    def state():
        return jsonify(service.state())

    @app.post("/api/action")
    def action():
        origin = request.headers.get("Origin")
        if origin is not None and origin.rstrip("/") != request.host_url.rstrip("/"):
            return _error(403, f"cross-origin request from {origin!r} refused")
        try:
            act, item_id, reason = _parse_action(request)
        except BadRequest as e:
            return _error(e.status, str(e))
        try:
            return jsonify({"ok": True, "state": service.act(act, item_id, reason)})
        except ActionRefused as e:
            # A malformed action is the client's error (400); a well-formed one that the review state does not
            # allow now (limit reached, page out of date, ...) is a conflict (409).
            status = 400 if e.code in ("bad_reason", "bad_action") else 409
            return _error(status, str(e), code=e.code, state=service.state(str(e)))

    @app.get("/image/<item_id>/<role>")
    def image(item_id: str, role: str):
        try:
            data, mimetype = service.image_file(item_id, role)
        except KeyError:
            return _error(404, "no such image: images are addressed as /image/<item id of this batch>/ref|dist")
        except ImageUnavailable as e:
            return _error(422, str(e))
        resp = Response(data, mimetype=mimetype)
        resp.headers["Cache-Control"] = "private, max-age=600"
        return resp

    return app
