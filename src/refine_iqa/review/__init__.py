"""Human-in-the-loop review of the Refine-Perception manifest (a small local web app).

`create_app` builds the Flask app, `load_decisions` reads what reviewers decided, `register_cli` adds
`refine-iqa review` to the project's command line. See docs/review.md.
"""

from refine_iqa.review.decisions import REASONS, load_decisions

__all__ = ["REASONS", "create_app", "load_decisions", "register_cli"]


def __getattr__(name):
    # Lazy: Flask is only imported when the web app is built.
    if name == "create_app":
        from refine_iqa.review.app import create_app

        return create_app
    if name == "register_cli":
        from refine_iqa.review.cli import register_cli

        return register_cli
    raise AttributeError(name)
