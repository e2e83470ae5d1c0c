"""Run learnability recipes one after another and write each result as JSON (tests/conftest.py starts this).

Usage: learnability_background.py OUT_DIR SEED RECIPE [RECIPE ...]   (recipes: tests/learnability.py RECIPES)
A recipe that raises writes {"error": ...} so the waiting test fails with the message instead of timing out.
"""

import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

import learnability  # noqa: E402


def main(out: str, seed: str, *recipes: str) -> None:
    # Lowest priority: the suite's tests take the CPU whenever they need it (a SLURM or DVC workflow test runs
    # several processes at once and ran twice as slow beside this one at nice 5); the recipes use what is left.
    # The learnability tests themselves run last (conftest.py), so nothing waits for this process early.
    os.nice(19)
    for recipe in recipes:
        try:
            with tempfile.TemporaryDirectory(prefix=f"learn-{recipe}-") as tmp:
                result = learnability.RECIPES[recipe](tmp, int(seed))
        except Exception:
            result = {"error": traceback.format_exc()}
        part = Path(out) / f"{recipe}.json.tmp"
        part.write_text(json.dumps(result))
        part.rename(Path(out) / f"{recipe}.json")  # the waiting test never reads a half-written file
        print(f"{recipe} done", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
