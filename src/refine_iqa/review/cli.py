"""`refine-iqa review MANIFEST ...`: serve the review screen for one batch on this machine."""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import os
import signal
import sys

from refine_iqa.review.qc import DEFAULT_MAX_BOX_FRAC, DEFAULT_MAX_DELETE_FRAC

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def _default_reviewer() -> str:
    try:
        return os.environ.get("REFINE_IQA_REVIEWER") or getpass.getuser() or "reviewer"
    except (KeyError, OSError):
        return "reviewer"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifest", help="manifest.jsonl written by the assemble step")
    p.add_argument("--decisions", default=None,
                   help="decisions file (append-only JSON Lines); "
                        "default <manifest folder>/review_decisions/<batch>.jsonl")
    p.add_argument("--reviewer", default=None, help="your name, stored with every decision (default: login name)")
    p.add_argument("--batch", default="all",
                   help="batch name; 'K/N' reviews the K-th of N equal slices of the manifest, "
                        "any other name all of it")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (0 picks a free one)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address to listen on (default 127.0.0.1: this machine only; anything else has no login)")
    p.add_argument("--max-delete-frac", type=float, default=DEFAULT_MAX_DELETE_FRAC,
                   help="largest share of a batch that may be deleted (paper: 0.2)")
    p.add_argument("--max-box-frac", type=float, default=DEFAULT_MAX_BOX_FRAC,
                   help="boxes covering more of the image are removed before review (paper: 0.9)")
    p.add_argument("--image-root", default=None, help="folder that relative image paths start from (default: .)")


def register_cli(subparsers) -> argparse.ArgumentParser:
    """Add the `review` sub-command to the project's CLI; the handler is `args.func(args) -> exit code`."""
    p = subparsers.add_parser("review", help="human review of the Refine-Perception manifest in a browser",
                              description=__doc__)
    add_arguments(p)
    p.set_defaults(func=run_review)
    return p


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_review(args: argparse.Namespace) -> int:
    from werkzeug.serving import make_server

    from refine_iqa.review.app import EXTENSION_KEY, create_app

    if not 0 <= args.port <= 65535:
        print(f"error: --port must be 0..65535, got {args.port}", file=sys.stderr)
        return 2
    loopback = is_loopback(args.host)
    try:
        app = create_app(args.manifest, args.decisions, reviewer=args.reviewer or _default_reviewer(),
                         batch=args.batch, max_delete_frac=args.max_delete_frac, max_box_frac=args.max_box_frac,
                         image_root=args.image_root, allowed_hosts=None if loopback else ["*"])
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    service = app.extensions[EXTENSION_KEY]
    try:
        server = make_server(args.host, args.port, app, threaded=True)
    except OSError as e:
        service.close()
        print(f"error: cannot listen on {args.host}:{args.port} ({e.strerror or e}); try another --port",
              file=sys.stderr)
        return 2
    if not loopback:
        print(f"WARNING: listening on {args.host}, beyond this machine. The review server has no login: anyone "
              "who can reach this port can see the images and change decisions.", file=sys.stderr, flush=True)
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    st = service.state()
    print(f"Review server on http://{shown_host}:{server.server_port}/  batch {args.batch!r}, reviewer "
          f"{st['reviewer']!r}, {st['progress']['reviewed']}/{st['progress']['total']} reviewed, "
          f"decisions in {service.decisions_path}", flush=True)

    def _stop(signum, frame):  # SIGTERM: finish the request in flight, then exit cleanly
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        service.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="refine-iqa-review", description=__doc__)
    add_arguments(parser)
    return run_review(parser.parse_args(argv))
