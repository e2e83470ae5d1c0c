"""`make release`: publish the current results to a named DVC remote and record them in git.

    python workflow_scripts/release.py [--remote NAME] [--message TEXT]

1. dvc.yaml must be the generated one and `dvc status` clean (every output built by the committed code and
   settings: run `make run` first; a dirty code tree is refused, since dvc.lock would name code git lacks).
2. `dvc push -r NAME` uploads every cached output (models, curves, results, report and figures).
3. dvc.lock (and dvc.yaml) are committed: the committed dvc.lock always names hashes that are in the remote.
See docs/provenance.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"release: `{' '.join(cmd)}` failed:\n{proc.stdout}{proc.stderr}")
    return proc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--remote", default=None, help="DVC remote name (default: the configured default remote)")
    ap.add_argument("--message", default="Release: dvc.lock of the pushed outputs")
    args = ap.parse_args(argv)
    dvc = str(Path(sys.executable).parent / "dvc")
    sh(sys.executable, str(REPO / "workflow_scripts/gen_dvc.py"), "--check")
    dirty = [ln[3:] for ln in sh("git", "status", "--porcelain").stdout.splitlines()
             if ln[3:] not in ("dvc.lock", "dvc.yaml")]
    if dirty:
        raise SystemExit("release: commit or discard these changes first (a release names the committed code): "
                         + ", ".join(dirty[:10]))
    status = sh(dvc, "status").stdout
    if "Data and pipelines are up to date" not in status:
        raise SystemExit(f"release: outputs are not up to date with the code and params; run `make run` first:\n{status}")
    sh(dvc, "push", *(["-r", args.remote] if args.remote else []))
    sh("git", "add", "dvc.lock", "dvc.yaml")
    if sh("git", "diff", "--cached", "--quiet", check=False).returncode != 0:
        sh("git", "commit", "-q", "-m", args.message)
    print(f"released {sh('git', 'rev-parse', '--short', 'HEAD').stdout.strip()} to remote "
          f"{args.remote or '(default)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
