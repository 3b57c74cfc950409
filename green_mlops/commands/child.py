"""Run a command under ``green-mlops measure`` so that every signal meant for it reaches it exactly once.

The command runs in a process group of its own, and measure passes on every SIGINT, SIGTERM and
SIGHUP it receives: sent to measure's pid alone (``kill -INT PID``, a scheduler's SIGTERM) or to
measure's group (``kill -INT -PGID``), the command gets it once. When measure owns the terminal's
foreground, it hands the foreground to the command's group for the run (as a shell does), so
Ctrl-C and terminal reads go to the command directly, and takes it back afterwards.

Measure blocks those signals in every thread (before its meter threads start) and takes them with
:func:`signal.sigtimedwait`; the command is started with :func:`os.posix_spawnp`, a clean signal
mask and default handlers, so it handles signals as usual.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_WAKE = (*FORWARDED, signal.SIGCHLD)  # SIGCHLD only wakes the wait when the command exits
_BLOCKED = (*_WAKE, signal.SIGTTOU)  # SIGTTOU blocked: taking the terminal back from the background is allowed


class SignalGate:
    """While entered, the forwarded signals are blocked here and in threads started meanwhile, and queue up."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._old: set[signal.Signals] | None = None

    def __enter__(self) -> SignalGate:
        self._old = signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED)
        return self

    def __exit__(self, *exc: object) -> None:
        while signal.sigtimedwait((signal.SIGCHLD, signal.SIGTTOU), 0) is not None:
            pass  # nothing of ours may stay pending when the old mask returns
        if self._old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old)

    def take(self, timeout: float) -> int | None:
        """The next forwarded signal within ``timeout`` seconds (recorded in ``received``), else None."""
        info = signal.sigtimedwait(_WAKE, max(timeout, 0.0))
        if info is None or info.si_signo == signal.SIGCHLD:
            return None
        self.received.append(info.si_signo)
        return info.si_signo

    def wait_for(self, done: threading.Event, poll: float = 0.1) -> int | None:
        """Wait until ``done`` is set; a forwarded signal first ends the wait and is returned."""
        while not done.is_set():
            signo = self.take(poll)
            if signo is not None:
                return signo
        return None


def spawn(command: Sequence[str], stdout_to_stderr: bool = False) -> int:
    """Start ``command`` (PATH looked up) in its own process group, with a clean signal mask; its pid.

    ``stdout_to_stderr``: the command's standard output goes to this process's stderr (``measure --json``
    keeps stdout for its JSON).
    """
    defaults = [s for s in (*FORWARDED, signal.SIGPIPE, getattr(signal, "SIGXFSZ", None)) if s is not None]
    actions = [(os.POSIX_SPAWN_DUP2, 2, 1)] if stdout_to_stderr else None
    return os.posix_spawnp(command[0], list(command), dict(os.environ), setpgroup=0, setsigmask=(),
                           setsigdef=defaults, file_actions=actions)


@contextlib.contextmanager
def terminal_for(pid: int) -> Iterator[None]:
    """Give the terminal's foreground to ``pid``'s group while inside, if this process has it."""
    fd = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        candidate = sys.stdin.fileno()
        if os.isatty(candidate) and os.tcgetpgrp(candidate) == os.getpgrp():
            os.tcsetpgrp(candidate, pid)
            fd = candidate
            os.killpg(pid, signal.SIGCONT)  # had it read the terminal before it was its own, it was stopped
    try:
        yield
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.tcsetpgrp(fd, os.getpgrp())


def wait_forwarding(gate: SignalGate, pid: int, poll: float = 0.2) -> int:
    """Wait for ``pid`` to exit, passing on every forwarded signal; its exit code (128+N for signal N)."""
    with terminal_for(pid):
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                return code if code >= 0 else 128 - code
            signo = gate.take(poll)
            if signo is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signo)
