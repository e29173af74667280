"""Which process a recorded PID names: its start time, so a PID reused by another process (whose
process group would otherwise receive our SIGTERM/SIGKILL) is told apart from the server we started."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["command_line", "identity"]


def identity(pid: int) -> str | None:
    """A string naming this process and no later one with the same PID (boot id + start time on
    Linux, the start time `ps` reports elsewhere); None if no process has this PID."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # the command name may hold spaces and ")"
            boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        except (OSError, IndexError):
            return None
        return f"{boot}:{fields[19]}"  # field 22 of stat: start time in clock ticks since boot
    return _ps(pid, "lstart=")


def command_line(pid: int) -> str | None:
    """The process's command line, or None if no process has this PID."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        return _ps(pid, "command=")
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _ps(pid: int, field: str) -> str | None:
    try:
        done = subprocess.run(["ps", "-o", field, "-p", str(pid)], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return done.stdout.strip() or None
