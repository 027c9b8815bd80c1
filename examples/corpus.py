"""The text corpus the word-count and text-PCA examples read: files on this machine.

Used in the driver only (tasks get the text, not the paths), so compute nodes need not see it.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path


def corpus_files(folder: str | Path | None = None,
                 pattern: str = "*.py") -> tuple[Path, list[Path]]:
    """The corpus root and its files matching ``pattern``, sorted by path.

    ``folder`` defaults to the standard library (``sysconfig.get_paths()["stdlib"]``, its top
    level only); a folder you name is searched recursively.

    Raises
    ------
    FileNotFoundError
        If ``folder`` is not a directory.
    """
    if folder is None:
        root = Path(sysconfig.get_paths()["stdlib"])
        paths = root.glob(pattern)
    else:
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"corpus folder {root} is not a directory")
        paths = root.rglob(pattern)
    return root, sorted(p for p in paths if p.is_file())
