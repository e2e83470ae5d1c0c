"""The device and thread setup of a workflow job. Its own module, not stages/common.py: the data steps need
`job_device` only, and refine_iqa.steps hashes whole files, so a helper shared with the model loader or the
training args would make an edit there re-run curation and synthesis (docs/provenance.md)."""

from __future__ import annotations


def setup_compute(params: dict) -> str:
    """Threads from `compute.threads`; the device of a training or model-evaluation job, which refuses to start
    on the CPU when the configuration says cuda."""
    import torch

    torch.set_num_threads(params["compute"]["threads"])
    device = params["compute"]["device"]
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("compute.device is cuda but no GPU is visible; set compute.device: cpu")
    return device


def job_device(params: dict, job: str) -> str:
    """The device of a job that can run on either (baselines, curation): cuda only when the configuration asks
    for it AND this job sees a GPU. Under SLURM a job sees GPUs only when its resources request them
    (profiles/slurm/config.yaml), so a CPU-partition job runs on the CPU instead of failing."""
    import torch

    torch.set_num_threads(params["compute"]["threads"])
    if params["compute"]["device"] == "cuda":
        if torch.cuda.is_available():
            return "cuda"
        print(f"[{job}] compute.device is cuda but this job has no GPU (its resources request none): "
              "running on the CPU", flush=True)
    return "cpu"
