"""`make chromium`: the Chromium the browser tests drive is found, or installed with apt-get, or the target
fails saying what to do (never a browser download of Playwright's own)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _make(tmp_path: Path, chromium: str) -> subprocess.CompletedProcess[str]:
    bare = tmp_path / "bin"  # a PATH with make only: no chromium, no apt-get
    bare.mkdir(exist_ok=True)
    make = shutil.which("make")
    assert make is not None
    (bare / "make").symlink_to(make)
    return subprocess.run(
        ["make", "--no-print-directory", "-s", "chromium", f"CHROMIUM={chromium}"],
        cwd=ROOT, env={"PATH": str(bare)}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_no_chromium_and_no_apt_is_a_clear_failure(tmp_path):
    done = _make(tmp_path, "")
    assert done.returncode != 0
    assert "no Chromium found" in done.stderr and "CHROMIUM=" in done.stderr, done.stderr


def test_a_given_chromium_is_used(tmp_path):
    done = _make(tmp_path, "/bin/sh")  # any executable stands for it: the target checks only that it is one
    assert done.returncode == 0 and done.stdout.strip() == "chromium: /bin/sh", (done.stdout, done.stderr)
