"""Refine-IQA: multi-stage reinforcement finetuning for perceptual image quality assessment."""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy: importing the package must stay cheap (torch is only loaded when scoring).
    if name == "Scorer":
        from refine_iqa.inference import Scorer

        return Scorer
    raise AttributeError(name)
