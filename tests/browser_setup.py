"""Install what the headless-browser test needs when it is absent, then report where it is.

The browser test drives Debian's Chromium through Debian's ChromeDriver (same version, shipped together)
with the Selenium Python bindings. Nothing is downloaded from a browser vendor: Chromium and the driver
come from apt, Selenium from PyPI. CI runs as root on a fresh machine, so this script installs both when
missing; a non-root user gets a clear message naming the command to run instead.

Run it by hand:  .venv/bin/python tests/browser_setup.py
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SELENIUM_PIN = "selenium==4.51.0"  # keep in step with requirements.txt (4.52.0 needs a certifi the mirror lacks)
APT_PACKAGES = ("chromium", "chromium-driver")

# Flags measured to work on these machines (root, closed network): without the networking flags Chromium
# keeps trying to reach Google's hosts and its connections are refused.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


class BrowserSetupError(RuntimeError):
    pass


@dataclass(frozen=True)
class BrowserPaths:
    chromium: Path
    chromedriver: Path


def _run(cmd: list[str], env: dict | None = None) -> None:
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-20:])
        raise BrowserSetupError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")


def ensure_apt_packages() -> None:
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if os.geteuid() != 0:
        raise BrowserSetupError(
            f"{CHROMIUM} or {CHROMEDRIVER} is missing and this user is not root: run "
            f"'sudo apt-get update && sudo apt-get install -y {' '.join(APT_PACKAGES)}'"
        )
    if shutil.which("apt-get") is None:
        raise BrowserSetupError("apt-get not found: install Chromium and ChromeDriver with this system's "
                                "package manager")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", "update"], env=env)
    _run(["apt-get", "install", "-y", "--no-install-recommends", *APT_PACKAGES], env=env)
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        raise BrowserSetupError(f"apt-get finished but {CHROMIUM} / {CHROMEDRIVER} are still missing")


def ensure_selenium() -> None:
    try:
        importlib.import_module("selenium.webdriver")
        return
    except ImportError:
        pass
    _run([sys.executable, "-m", "pip", "install", "--quiet", SELENIUM_PIN])
    importlib.invalidate_caches()
    importlib.import_module("selenium.webdriver")


def ensure_browser() -> BrowserPaths:
    """Make Chromium, ChromeDriver and Selenium available; raise BrowserSetupError saying why not."""
    ensure_apt_packages()
    ensure_selenium()
    return BrowserPaths(CHROMIUM, CHROMEDRIVER)


def make_driver(paths: BrowserPaths, user_data_dir: str | os.PathLike, width: int = 1280, height: int = 900):
    """A headless Chrome WebDriver on Debian's binaries (no Selenium Manager lookup: both paths are given)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(paths.chromium)
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={user_data_dir}")
    opts.add_argument(f"--window-size={width},{height}")
    return webdriver.Chrome(options=opts, service=Service(executable_path=str(paths.chromedriver)))


if __name__ == "__main__":
    try:
        p = ensure_browser()
    except BrowserSetupError as e:
        print(f"browser setup failed: {e}", file=sys.stderr)
        sys.exit(1)
    version = subprocess.run([str(p.chromium), "--version"], capture_output=True, text=True).stdout.strip()
    print(f"ok: {version}; driver {p.chromedriver}")
