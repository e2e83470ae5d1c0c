"""Refine-IQA: multi-stage reinforcement finetuning for perceptual image quality assessment."""

__version__ = "0.1.0"

import sys as _sys

if "pyiqa" in _sys.modules:  # pyiqa already loaded: make create_metric("refine_iqa") work (cheap here)
    from refine_iqa import pyiqa_metric as _pyiqa_metric  # noqa: E402

    _pyiqa_metric.register()


def __getattr__(name):
    # Lazy: importing the package must stay cheap (torch is only loaded when scoring).
    if name == "Scorer":
        from refine_iqa.inference import Scorer

        return Scorer
    raise AttributeError(name)
