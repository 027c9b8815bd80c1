"""Cancel live jobs when the driver gets SIGINT or SIGTERM (unless the executor is detached).

Handlers are installed when the first batch run starts, from the main thread only; never at
import. Each handler cancels, then hands the signal to whatever handler was there before
(Python's KeyboardInterrupt for SIGINT, the default action for SIGTERM).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import weakref

log = logging.getLogger("hpcpar")
_backends: weakref.WeakSet = weakref.WeakSet()
_previous: dict[int, object] = {}
_lock = threading.Lock()


def register(backend) -> None:
    """Watch ``backend`` (anything with ``on_driver_signal()``); install handlers if we can."""
    _backends.add(backend)
    if threading.current_thread() is not threading.main_thread():
        return
    with _lock:
        for sig in (signal.SIGINT, signal.SIGTERM):
            if sig not in _previous:
                try:
                    _previous[sig] = signal.signal(sig, _handler)
                except ValueError:       # not the main interpreter
                    return


def _handler(signum, frame) -> None:
    for backend in list(_backends):
        try:
            backend.on_driver_signal(signal.Signals(signum).name)
        except Exception as exc:  # noqa: BLE001 - never block the signal's own effect
            log.warning("hpcpar: cancelling jobs on %s failed: %s", signal.Signals(signum).name, exc)
    prev = _previous.get(signum, signal.SIG_DFL)
    if callable(prev):
        prev(signum, frame)
    elif prev == signal.SIG_DFL:
        with _lock:
            signal.signal(signum, signal.SIG_DFL)
            _previous.pop(signum, None)
        os.kill(os.getpid(), signum)
