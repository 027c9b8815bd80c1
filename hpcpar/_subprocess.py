"""Run scheduler commands: argument lists only, always a timeout, errors translated."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Sequence

from .errors import SchedulerNotFoundError, SubmissionError

log = logging.getLogger("hpcpar")


def run(argv: Sequence[str], backend: str, timeout_s: float = 60.0, input: str | None = None,
        check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` (never through a shell) and return the completed process.

    Raises
    ------
    SchedulerNotFoundError
        If ``argv[0]`` is not on PATH.
    SubmissionError
        If it times out, or (with ``check``) exits non-zero; carries argv, exit code and stderr.
    """
    argv = [str(a) for a in argv]
    if shutil.which(argv[0], path=(env or {}).get("PATH")) is None:
        raise SchedulerNotFoundError(argv[0], backend)
    log.debug("running %s", argv)
    try:
        proc = subprocess.run(argv, input=input, capture_output=True, text=True,
                              timeout=timeout_s, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SubmissionError(argv, None, _text(exc.stderr), _text(exc.stdout)) from exc
    except FileNotFoundError as exc:
        raise SchedulerNotFoundError(argv[0], backend) from exc
    if check and proc.returncode != 0:
        raise SubmissionError(argv, proc.returncode, proc.stderr, proc.stdout)
    return proc


def _text(data) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
