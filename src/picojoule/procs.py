"""Process identity and lifetime: who holds a claim, is it still alive, and dying with a parent.

Public: `ProcessId`, `this_process`, `alive`, `die_with_parent`, `watch_owner`.

A pid alone does not name a process: Linux reuses pids. `ProcessId` adds the start time from
`/proc/<pid>/stat` (field 22, clock ticks since boot), so a claim whose holder died is not
mistaken for a live one when an unrelated process later gets the same pid.

Workers must not outlive the run that started them (`kill -9` of the run leaves them blocked on
a queue whose write end they hold themselves). Two mechanisms, either one enough:
- `die_with_parent()`: `prctl(PR_SET_PDEATHSIG, SIGKILL)` (Linux), so the kernel kills this
  process when its parent dies. The forkserver calls it (it is a child of the run), and every
  pool worker (a child of the forkserver): the run dies, the forkserver dies, the workers die.
- `watch_owner(owner)`: a daemon thread that checks every `interval_s` whether the run is
  still alive and ends this process if not - the portable fallback (macOS, no prctl).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass

__all__ = ["ProcessId", "this_process", "alive", "die_with_parent", "watch_owner"]

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ProcessId:
    """A process, named so that a reused pid does not match: host, pid, start time."""

    host: str
    pid: int
    start: int  # clock ticks after boot (Linux); 0 where unknown

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.start}"

    @classmethod
    def parse(cls, text: str) -> ProcessId | None:
        host, _, rest = text.rpartition(":")
        host, _, pid = host.rpartition(":")
        try:
            return cls(host, int(pid), int(rest))
        except ValueError:
            return None


def _start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks after boot; None if there is no such process (or
    it is a zombie: dead, only not yet reaped); 0 where /proc is unavailable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return 0
    # comm (field 2) may hold spaces and parentheses: split after its closing ')'
    fields = stat[stat.rfind(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def this_process() -> ProcessId:
    pid = os.getpid()
    return ProcessId(socket.gethostname(), pid, _start_time(pid) or 0)


def alive(p: ProcessId) -> bool | None:
    """Is `p` running? None when it cannot be known from here (another host)."""
    if p.host != socket.gethostname():
        return None
    if sys.platform.startswith("linux"):
        start = _start_time(p.pid)
        if start is None:
            return False
        return start == 0 or p.start == 0 or start == p.start
    try:
        os.kill(p.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send `sig` to this process when its parent dies (Linux only; returns
    whether it could)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def watch_owner(owner: ProcessId, interval_s: float = 0.25) -> threading.Thread:
    """Start a daemon thread that ends this process (`os._exit`) once `owner` is gone."""

    def watch() -> None:
        while alive(owner) is not False:
            time.sleep(interval_s)
        os._exit(1)

    t = threading.Thread(target=watch, name="picojoule-owner-watch", daemon=True)
    t.start()
    return t


def processes_with_env(name: str, value: str) -> dict[int, tuple[int, str]]:
    """Live processes (zombies excluded) whose environment holds `name=value`: pid -> (parent
    pid, command line). Children inherit the environment, so tagging a run's environment finds
    every process it started - a worker re-parented after its run died included. Linux
    (/proc); processes this user may not read are skipped."""
    mark = f"{name}={value}".encode()
    found: dict[int, tuple[int, str]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if mark not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if fields[0] not in (b"Z", b"X"):
            found[int(entry)] = (int(fields[1]), cmd)
    return found
