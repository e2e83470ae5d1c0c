"""Send a job's stdout and stderr to its log file (workflow jobs log to files, one per job)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from pathlib import Path


@contextlib.contextmanager
def job_log(path: str | os.PathLike):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        handler = logging.StreamHandler(f)
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)
        try:
            yield f
        except BaseException as e:
            traceback.print_exc(file=f)
            # One clear line for the console; the traceback is in the log.
            print(f"error: {e} (full log: {path})", file=sys.__stderr__)
            raise
        finally:
            logging.getLogger().removeHandler(handler)
