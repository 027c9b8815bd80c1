#!/usr/bin/env python3
"""Text to vectors to principal components: TF-IDF by hashing, chunked through ``hpcpar``, then SVD.

The seed's ``vec2pca`` in spirit. The documents are the docstrings (module, class and function)
of the Python standard library's top-level ``*.py`` files, about 2,500 of them on CPython 3.11,
or the paragraphs of the text files under a folder you name. Each task turns a batch of
documents into a sparse matrix of term counts with scikit-learn's ``HashingVectorizer`` (stateless,
so batches can be vectorised anywhere and stacked) and counts the terms it saw. The driver stacks
the batches, weights them with ``TfidfTransformer`` and reduces them with ``TruncatedSVD`` (latent
semantic analysis, PCA's counterpart for sparse TF-IDF), then prints each component's top terms.

Naming the hashed columns: a hashing vectoriser keeps no vocabulary, so each task also returns a
``Counter`` of the terms in its batch. The driver hashes every distinct term once, with the same
hasher, and names each column after the most frequent term that falls in it (a column shared by
several terms is marked ``*``). This costs one small dictionary per task and keeps the
vectorising a single pass; a vocabulary built first with ``map_reduce`` would need a second pass
over the corpus.

    python examples/text_pca.py                        # local backend (process pool)
    python examples/text_pca.py --backend slurm        # the same code on SLURM
    python examples/text_pca.py --sequential           # the same pipeline without hpcpar
    python examples/text_pca.py --corpus ~/books --glob '*.txt' --components 8
"""

from __future__ import annotations

import argparse
import ast
import sys
import sysconfig
import time
from collections import Counter
from pathlib import Path

import numpy as np
from corpus import corpus_files

import hpcpar

N_FEATURES = 2**18                        # hashed columns
MIN_WORDS = 10                            # shorter documents are dropped
TOKEN_PATTERN = r"(?u)\b[a-zA-Z][a-zA-Z]+\b"


def python_docstrings(path: Path) -> list[str]:
    """The module, class and function docstrings of one Python file (``[]`` if it does not parse)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except (SyntaxError, ValueError):
        return []
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return [d for node in ast.walk(tree) if isinstance(node, kinds) and (d := ast.get_docstring(node))]


def read_documents(folder: str | Path | None = None, pattern: str = "*.py") -> list[str]:
    """The corpus: docstrings of ``*.py`` files, paragraphs of any other file, in path order.

    ``folder`` defaults to the standard library (``sysconfig.get_paths()["stdlib"]``, its top
    level only); a folder you name is searched recursively. Documents of fewer than
    ``MIN_WORDS`` words are dropped.

    Raises
    ------
    FileNotFoundError
        If ``folder`` is not a directory or yields no document.
    """
    root, paths = corpus_files(folder, pattern)
    docs: list[str] = []
    for path in paths:
        if path.suffix == ".py":
            docs += python_docstrings(path)
        else:
            docs += path.read_text(encoding="utf-8", errors="replace").split("\n\n")
    docs = [d for d in docs if len(d.split()) >= MIN_WORDS]
    if not docs:
        raise FileNotFoundError(f"no document of {MIN_WORDS}+ words in files matching "
                                f"{pattern!r} under {root}")
    return docs


def make_hasher():
    """The vectoriser every task uses: raw term counts in ``N_FEATURES`` hashed columns."""
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(n_features=N_FEATURES, token_pattern=TOKEN_PATTERN,
                             stop_words="english", alternate_sign=False, norm=None)


def vectorize_batch(texts: list[str]):
    """The task: ``(counts, terms)``: a CSR matrix (len(texts), N_FEATURES) of term counts and
    a Counter of the terms seen (to name the columns afterwards)."""
    hasher = make_hasher()
    analyze = hasher.build_analyzer()
    terms = Counter(t for text in texts for t in analyze(text))
    return hasher.transform(texts), terms


def column_names(terms: Counter) -> dict[int, str]:
    """Column index -> most frequent term hashed there (ties: alphabetical), ``*`` if shared."""
    from sklearn.feature_extraction.text import HashingVectorizer

    vocab = sorted(terms, key=lambda t: (-terms[t], t))
    one_term = HashingVectorizer(n_features=N_FEATURES, analyzer=lambda term: [term],
                                 alternate_sign=False, norm=None)
    columns = one_term.transform(vocab).indices      # one non-zero per row, in row order
    names: dict[int, str] = {}
    for term, col in zip(vocab, columns.tolist(), strict=False):
        if col not in names:
            names[col] = term
        elif not names[col].endswith("*"):
            names[col] += "*"
    return names


def batches(docs: list[str], size: int) -> list[list[str]]:
    return [docs[i:i + size] for i in range(0, len(docs), size)]


def pipeline(docs: list[str], mapper=map, batch_size: int = 200, components: int = 5):
    """Vectorise ``docs`` in batches through ``mapper`` (``map`` or ``Executor.map``), then
    TF-IDF and a ``components``-dimensional TruncatedSVD.

    Returns
    -------
    svd : TruncatedSVD
        Fitted; ``components_`` has shape (components, N_FEATURES).
    counts : scipy.sparse.csr_matrix
        The stacked term counts, shape (len(docs), N_FEATURES).
    names : dict of int to str
        Column names (see :func:`column_names`).
    """
    import scipy.sparse
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfTransformer

    parts = list(mapper(vectorize_batch, batches(docs, batch_size)))
    counts = scipy.sparse.vstack([m for m, _ in parts], format="csr")
    terms = sum((t for _, t in parts), Counter())
    tfidf = TfidfTransformer(sublinear_tf=True).fit_transform(counts)
    svd = TruncatedSVD(n_components=components, random_state=0).fit(tfidf)
    return svd, counts, column_names(terms)


def top_terms(svd, names: dict[int, str], k: int = 8) -> list[list[str]]:
    """The ``k`` columns with the largest weights in each component, by name."""
    return [[names.get(int(c), f"#{c}") for c in np.argsort(-row, kind="stable")[:k]]
            for row in svd.components_]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default=None,
                   help="hpcpar backend (default: $HPCPAR_BACKEND, the profile, else local)")
    p.add_argument("--sequential", action="store_true",
                   help="run the same pipeline with the built-in map, without hpcpar")
    p.add_argument("--corpus", help="folder of files (default: the Python standard library)")
    p.add_argument("--glob", default="*.py", help="file name pattern in the corpus (default *.py)")
    p.add_argument("--components", type=int, default=5, help="SVD components (default 5)")
    p.add_argument("--batch-size", type=int, default=200, help="documents per task (default 200)")
    p.add_argument("--top", type=int, default=8, help="terms printed per component (default 8)")
    p.add_argument("--save", metavar="FILE.npz",
                   help="save components_ and explained_variance_ratio_ to this file")
    a = p.parse_args(argv)
    if a.components < 1 or a.batch_size < 1 or a.top < 1:
        p.error("--components, --batch-size and --top must be >= 1")
    if a.sequential and a.backend:
        p.error("--sequential runs without hpcpar; drop --backend")
    try:
        docs = read_documents(a.corpus, a.glob)
    except FileNotFoundError as exc:
        p.error(str(exc))
    print(f"corpus: {len(docs)} documents, {sum(len(d.split()) for d in docs)} words, from "
          f"{a.corpus or sysconfig.get_paths()['stdlib']}")

    t0 = time.perf_counter()
    if a.sequential:
        where = "sequential, no hpcpar"
        svd, counts, names = pipeline(docs, map, a.batch_size, a.components)
    else:
        with hpcpar.Executor(a.backend, job_name="text-pca", mem="1GB", walltime="00:10:00") as ex:
            where = f"hpcpar {ex.backend_name}"
            svd, counts, names = pipeline(docs, ex.map, a.batch_size, a.components)
    wall = time.perf_counter() - t0
    print(f"term counts: {counts.shape[0]} x {counts.shape[1]} hashed columns, {counts.nnz} "
          f"non-zeros, {len(names)} named columns; {len(batches(docs, a.batch_size))} batches")
    for i, (ratio, terms) in enumerate(zip(svd.explained_variance_ratio_,
                                           top_terms(svd, names, a.top), strict=False)):
        print(f"component {i}: explained variance {ratio:.6f}: {' '.join(terms)}")
    print(f"ran as: {where}, {wall:.2f} s")
    if a.save:
        np.savez(a.save, components=svd.components_,
                 explained_variance_ratio=svd.explained_variance_ratio_)
    return 0


if __name__ == "__main__":
    sys.exit(main())
