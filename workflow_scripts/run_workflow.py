"""`make run`: check the settings and dvc.yaml, recover from a crashed run, then `dvc repro`.

    python workflow_scripts/run_workflow.py [DVC stage ...]

Recovery needs no manual step: when .snakemake/locks holds locks but no live Snakemake process works in this
repository (the run that took them was killed), the locks are stale and `snakemake --unlock` removes them.
A live Snakemake here is left alone (and then `dvc repro` stops with Snakemake's LockException, correctly).
Half-written outputs are re-run (`rerun-incomplete` in profiles/local); a killed training resumes from its
checkpoint and continues its MLflow run; runs left RUNNING by dead processes (this script's parent run
included) are closed as KILLED when the next job starts (refine_iqa.tracking). Linux: liveness is read from /proc.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from refine_iqa import tracking
from refine_iqa.config import load_params

REPO = Path(__file__).resolve().parents[1]


def _live_snakemake_here(repo: Path) -> list[int]:
    """PIDs of Snakemake processes (not us) whose working directory or --directory is `repo`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = Path(os.readlink(proc / "cwd"))
        except OSError:
            continue  # gone, or not ours to inspect
        args = [a.decode(errors="replace") for a in argv if a]
        if not any(Path(a).name == "snakemake" or a == "snakemake" for a in args):
            continue
        dirs = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--directory", "-d")]
        where = [Path(d) if Path(d).is_absolute() else cwd / d for d in dirs] or [cwd]
        if any(w.resolve() == repo.resolve() for w in where):
            found.append(int(proc.name))
    return found


def unlock_if_stale(repo: Path = REPO) -> bool:
    """Remove Snakemake's locks left by a killed run; True when it did."""
    locks = repo / ".snakemake" / "locks"
    if not locks.is_dir() or not any(locks.iterdir()):
        return False
    live = _live_snakemake_here(repo)
    if live:
        print(f"Snakemake is running here (pid {', '.join(map(str, live))}); leaving its locks", flush=True)
        return False
    print("stale Snakemake locks from a killed run: unlocking", flush=True)
    subprocess.run([sys.executable, "-m", "snakemake", "--unlock", "--cores", "1"], cwd=repo, check=True,
                   stdout=subprocess.DEVNULL)
    return True


def main(argv: list[str]) -> int:
    py = sys.executable
    for cmd in ([py, "-m", "refine_iqa.cli", "check"], [py, str(REPO / "workflow_scripts/gen_dvc.py"), "--check"]):
        if subprocess.run(cmd, cwd=REPO).returncode != 0:
            return 1
    unlock_if_stale(REPO)
    # One MLflow parent run per `make run`: every DVC stage's Snakemake joins it, and this process owns it, so
    # it alone closes it (a Snakemake closing it would mark it FINISHED while later stages still run under it;
    # a kill -9 of this process leaves it RUNNING, and the next run's first job closes it as KILLED).
    os.environ.setdefault(tracking.GROUP_ENV, f"run-{os.getpid()}-{int(time.time())}")
    os.environ.setdefault(tracking.OWNER_ENV, str(os.getpid()))
    status = "KILLED"  # interrupted (Ctrl-C) unless dvc returns
    try:
        rc = subprocess.run([str(Path(py).parent / "dvc"), "repro", *argv], cwd=REPO).returncode
        status = "FINISHED" if rc == 0 else "FAILED"
    finally:
        _finish_parent(status)
    return rc


def _finish_parent(status: str) -> None:
    """Close this invocation's parent run, if a job opened one (the tracking URI is relative to the repo)."""
    params = load_params(REPO / "params.yaml")
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        tracking.finish_parent(params["tracking"], status)
    finally:
        os.chdir(cwd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
