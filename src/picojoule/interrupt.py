"""SIGTERM handled as Ctrl-C, so long jobs have one way to stop cleanly.

Public: `Terminated`, `sigterm_as_interrupt`, `exit_code`.

Python turns SIGINT into `KeyboardInterrupt`, which unwinds through `finally` blocks: the
runners commit what finished, release their claims and shut their worker pools down. SIGTERM's
default action kills the process on the spot instead - no cleanup, and multiprocessing's
resource tracker then reports leaked semaphores. Inside `sigterm_as_interrupt()` a SIGTERM
raises `Terminated`, a `KeyboardInterrupt`, so the same cleanup runs; `exit_code` gives the
shell's conventional status (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["Terminated", "sigterm_as_interrupt", "exit_code"]


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (raised where a Ctrl-C would raise `KeyboardInterrupt`)."""

    signum = signal.SIGTERM


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough: let the cleanup run
    raise Terminated()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated`. A no-op off the main thread, or when
    the program already handles SIGTERM itself."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def exit_code(exc: BaseException) -> int:
    """128 + the signal number, as a shell reports a process that signal stopped (an
    exception's `signum` attribute; SIGINT for a plain `KeyboardInterrupt`)."""
    return 128 + int(getattr(exc, "signum", signal.SIGINT))
