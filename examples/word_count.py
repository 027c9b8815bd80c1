#!/usr/bin/env python3
"""Count the words of a real corpus with ``hpcpar.Executor.map_reduce`` (a seed workload).

The corpus is every ``*.py`` file of the Python standard library this interpreter runs on
(``sysconfig.get_paths()["stdlib"]``, about 170 files and 4.7 MB on CPython 3.11), or the text
files under a folder you name. Each task receives one file's text (name and contents, so the
compute nodes need not see the driver's files) and returns its list of words; each chunk
folds them into its own fresh ``collections.Counter`` (``Counter.update``), and the chunks'
counters are merged the same way: ``map_reduce``'s accumulator, as Spark's ``aggregate``. The
script checks the total against a sequential ``Counter`` over the same files and prints the
most common words.

    python examples/word_count.py                       # local backend (process pool)
    python examples/word_count.py --backend slurm       # the same code on SLURM
    python examples/word_count.py --corpus ~/books --glob '*.txt' --top 20

A "word" is a run of ASCII letters, lower-cased (``re.findall(r"[a-z]+", text.lower())``).
"""

from __future__ import annotations

import argparse
import re
import sys
import sysconfig
import time
from collections import Counter
from pathlib import Path

from corpus import corpus_files

import hpcpar

WORD = re.compile(r"[a-z]+")


def read_corpus(folder: str | Path | None = None, pattern: str = "*.py",
                limit: int | None = None) -> list[tuple[str, str]]:
    """``(relative name, text)`` of every file matching ``pattern`` in ``folder``, sorted by name.

    ``folder`` defaults to the standard library (``sysconfig.get_paths()["stdlib"]``, its top
    level only); a folder you name is searched recursively. Files are decoded as UTF-8 with
    undecodable bytes replaced.

    Raises
    ------
    FileNotFoundError
        If ``folder`` is not a directory or holds no matching file.
    """
    root, paths = corpus_files(folder, pattern)
    paths = paths[:limit]
    if not paths:
        raise FileNotFoundError(f"no file matching {pattern!r} in {root}")
    return [(str(p.relative_to(root)), p.read_text(encoding="utf-8", errors="replace"))
            for p in paths]


def words(document: tuple[str, str]) -> list[str]:
    """The mapper: the words of one ``(name, text)`` document."""
    return WORD.findall(document[1].lower())


def add_words(counts: Counter, words: list[str] | Counter) -> Counter:
    """The reducer: count ``words`` (a list, or another chunk's Counter) into ``counts``."""
    counts.update(words)
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default=None,
                   help="hpcpar backend (default: $HPCPAR_BACKEND, the profile, else local)")
    p.add_argument("--corpus", help="folder of text files (default: the Python standard library)")
    p.add_argument("--glob", default="*.py", help="file name pattern in the corpus (default *.py)")
    p.add_argument("--limit", type=int, help="use only the first N files")
    p.add_argument("--top", type=int, default=10, help="most common words to print (default 10)")
    a = p.parse_args(argv)
    if (a.limit is not None and a.limit < 1) or a.top < 1:
        p.error("--limit and --top must be >= 1")

    try:
        docs = read_corpus(a.corpus, a.glob, a.limit)
    except FileNotFoundError as exc:
        p.error(str(exc))
    n_bytes = sum(len(text.encode()) for _, text in docs)
    print(f"corpus: {len(docs)} files, {n_bytes / 1e6:.1f} MB, from "
          f"{a.corpus or sysconfig.get_paths()['stdlib']}")

    t0 = time.perf_counter()
    expected = Counter()
    for doc in docs:
        expected.update(words(doc))
    sequential_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    with hpcpar.Executor(a.backend, job_name="word-count", mem="1GB", walltime="00:10:00") as ex:
        backend = ex.backend_name
        # One task per file; hpcpar groups the files into a few chunks (array tasks), each
        # chunk counts its files' words into its own fresh copy of the empty Counter and sends
        # back that one Counter, and the driver merges them with the same add_words.
        counts = ex.map_reduce(words, docs, add_words, Counter())
    wall = time.perf_counter() - t0

    print(f"hpcpar {backend}: {sum(counts.values())} words, {len(counts)} distinct, "
          f"{wall:.2f} s (sequential Counter: {sequential_s:.2f} s)")
    print(f"top {a.top} words:")
    for word, n in counts.most_common(a.top):
        print(f"  {word:20s} {n:9d}")
    same = counts == expected
    print(f"equal to the sequential Counter: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
