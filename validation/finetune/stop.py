"""Graceful, bounded stop of a grid worker on SIGTERM (``timeout``, Slurm, Kubernetes, the parent launcher).

The handler :func:`install` puts on SIGTERM does not raise: an exception raised from a signal handler appears at
whatever bytecode the main thread happens to run, so it can be swallowed (a ``__del__``, a weakref or GC
callback, a library's ``except BaseException``) or leave a lock held, and the worker may train on or hang.
Instead

* the **first** SIGTERM only records the request (:func:`requested`) and arms a watchdog: a daemon thread that
  hard-exits the process with ``os._exit(128 + signum)`` after ``grace_s`` seconds (default
  :data:`DEFAULT_GRACE_S`, environment variable ``GELORA_STOP_GRACE_S``) if the graceful path has not finished;
* the training loop looks at the request at step boundaries (:func:`stop_callback`, added to every Trainer by
  :func:`validation.finetune.runner.train_and_score`: the end of a training step and of an evaluation batch)
  and the grid between cells (:func:`check`); both raise :class:`StopRequested`, which unwinds the cell: the
  cell is reported "interrupted", its checkpoints stay for the resume, its claim is released;
* a **second** SIGTERM ends the process at once (the handler restores the default action after the first);
* a backstop for a main thread stuck in a C call that holds the GIL (the watchdog thread cannot run then):
  the first SIGTERM also sets ``alarm(grace_s + ALARM_MARGIN_S)`` with SIGALRM's default action, which the
  kernel carries out without the interpreter.

The exit status is ``128 + signum`` (143) after a graceful stop or the watchdog; killed by the second signal
or the alarm, the process has no exit code of its own (``Popen.returncode`` -15 or -14; shells print 143 or
142). A hard exit leaves the claim file behind; its owner's pid is dead, so the claim is stale at once for every
process of the same host (:func:`validation.finetune.claims.is_stale`) and a rerun reclaims the cell.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

#: seconds between the first SIGTERM and the watchdog's hard exit
DEFAULT_GRACE_S = 30.0
#: seconds after the watchdog's deadline at which the kernel alarm (SIGALRM) ends the process regardless
ALARM_MARGIN_S = 5

_requested = threading.Event()
#: set by a real signal only (not by :func:`request`): what the watchdog waits for
_signalled = threading.Event()
_state: dict[str, Any] = {
    "signum": None,
    "grace_s": DEFAULT_GRACE_S,
    "fd": None,
    "label": "worker",
    "watchdog": None,
}


class StopRequested(BaseException):
    """Raised at a step or cell boundary after SIGTERM: the worker stops, the cell resumes on a rerun.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that no ``except Exception`` on the way (a library's,
    or the grid's per-cell failure record) mistakes the stop for a failure of the cell.
    """

    def __init__(self, signum: int, where: str = "") -> None:
        self.signum = signum
        name = signal.Signals(signum).name
        super().__init__(f"{name} received: stopped {where}".rstrip())

    @property
    def exit_code(self) -> int:
        """``128 + signum``, the shell's code for a process ended by that signal."""
        return 128 + self.signum


def grace_from_env() -> float:
    """``GELORA_STOP_GRACE_S`` as a finite float > 0 (default :data:`DEFAULT_GRACE_S` when unset or empty).

    Raises
    ------
    gelora.errors.ConfigError
        The variable is set to something else (:func:`validation._cli.positive_number`).
    """
    from validation._cli import positive_number

    text = os.environ.get("GELORA_STOP_GRACE_S", "")
    if not text:
        return DEFAULT_GRACE_S
    return positive_number(text, "GELORA_STOP_GRACE_S")


def _say(text: str) -> None:
    fd = _state["fd"]
    try:
        os.write(fd if fd is not None else 2, f"[{_state['label']}] {text}\n".encode())
    except OSError:
        pass


def _watchdog() -> None:
    _signalled.wait()  # never fired by request(): an embedding process (tests) may request and clear freely
    time.sleep(float(_state["grace_s"]))
    signum = int(_state["signum"] or signal.SIGTERM)
    _say(f"graceful stop did not finish within {_state['grace_s']:g} s: hard exit {128 + signum}")
    os._exit(128 + signum)


def _on_signal(signum: int, frame: Any) -> None:
    if _requested.is_set():  # only if the default action could not be restored below
        os._exit(128 + signum)
    _state["signum"] = signum
    _requested.set()
    _signalled.set()  # only the handler sets it; the watchdog thread waits on it
    # the kernel acts on these without the interpreter: a second signal ends the process at once, and the
    # alarm ends it even when a C call holds the GIL so that the watchdog thread cannot run
    signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(math.ceil(float(_state["grace_s"])) + ALARM_MARGIN_S)
    _say(
        f"{signal.Signals(signum).name} received: stopping at the next step boundary "
        f"(hard exit in {_state['grace_s']:g} s, at once on a second signal)"
    )


def install(grace_s: float | None = None, *, label: str = "worker") -> None:
    """Handle SIGTERM gracefully in this process (call once, from the main thread, before the work starts).

    Parameters
    ----------
    grace_s : float or None
        Seconds from the first SIGTERM to the hard exit (None: :func:`grace_from_env`).
    label : str
        Prefix of the lines written to the process's stderr as it was at install time (the worker log;
        a cell's own log redirection does not catch them).
    """
    _state["grace_s"] = grace_from_env() if grace_s is None else float(grace_s)
    _state["label"] = label
    if _state["fd"] is None:
        _state["fd"] = os.dup(2)
    if _state["watchdog"] is None:
        dog = threading.Thread(target=_watchdog, name="gelora-stop-watchdog", daemon=True)
        dog.start()
        _state["watchdog"] = dog
    signal.signal(signal.SIGTERM, _on_signal)


@contextlib.contextmanager
def handling(grace_s: float | None = None, *, label: str = "worker") -> Iterator[None]:
    """:func:`install` for the duration of the block; the previous SIGTERM handler comes back after it.

    For a process that does other things after its grid (an in-process ``gelora validate`` called from
    Python, the tests): outside the block SIGTERM means what it meant before. After a signal inside the
    block the handler stays (the process is stopping).
    """
    previous = signal.getsignal(signal.SIGTERM)
    install(grace_s, label=label)
    try:
        yield
    finally:
        if not _signalled.is_set():
            signal.signal(signal.SIGTERM, previous)


def requested() -> int | None:
    """The signal number of a pending stop request, or None."""
    return int(_state["signum"]) if _requested.is_set() else None


def request(signum: int = signal.SIGTERM) -> None:
    """Record a stop request as the handler does, without a signal (tests; an embedding process)."""
    _state["signum"] = signum
    _requested.set()


def clear() -> None:
    """Forget a stop request (tests; an embedding process that handled it)."""
    _requested.clear()
    _state["signum"] = None


def check(where: str = "") -> None:
    """Raise :class:`StopRequested` when a stop was requested; a no-op otherwise."""
    signum = requested()
    if signum is not None:
        raise StopRequested(signum, where)


@functools.cache
def _callback_class() -> type:
    from transformers import TrainerCallback

    class StopOnSignal(TrainerCallback):  # type: ignore[misc]
        """Raise :class:`StopRequested` at the end of the training step (or evaluation batch) after SIGTERM.

        Reads a flag and does nothing else, so a run that is not stopped trains exactly as without it.
        """

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            check(f"after step {state.global_step}/{state.max_steps}")

        def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            check("during evaluation")

    return StopOnSignal


def stop_callback() -> Any:
    """A new ``TrainerCallback`` that raises :class:`StopRequested` at step boundaries after a stop request."""
    return _callback_class()()


__all__ = [
    "ALARM_MARGIN_S",
    "DEFAULT_GRACE_S",
    "StopRequested",
    "check",
    "clear",
    "grace_from_env",
    "install",
    "request",
    "requested",
    "stop_callback",
]
