"""The documentation: every public name is in the API reference, every option is documented
where it is defined, and the Sphinx build passes with warnings as errors (``scripts/docs``).

The builds run on a copy of ``docs/`` in a temporary folder, so nothing is written into the
checkout (autosummary generates pages next to its sources).
"""

from __future__ import annotations

import dataclasses
import html
import io
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import hpcpar
from hpcpar.config import Options

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DIRECTIVE = re.compile(
    r"^\.\. (?:auto)?(?:class|function|exception|data|method)::\s+(\S+?)(?:\(|$)")


def documented_names(rst: str) -> list[str]:
    """Targets of ``.. autoclass::``/``.. function::``... lines, with their continuation lines."""
    names, in_directive = [], False
    for line in rst.splitlines():
        m = DIRECTIVE.match(line)
        if m:
            names.append(m.group(1))
            in_directive = True
        elif in_directive and re.match(r"^ {3,}hpcpar\.\w+", line) and "::" not in line:
            names.append(re.match(r"^\s+(hpcpar\.[\w.]+)", line).group(1))
        else:
            in_directive = False
    return names


def test_every_public_name_is_in_the_api_reference():
    names = documented_names((DOCS / "api.rst").read_text())
    public = {f"hpcpar.{n}" for n in hpcpar.__all__}
    assert public - set(names) == set(), "add these to docs/api.rst"
    top_level = {n for n in names if n.count(".") == 1}
    assert top_level - public == set(), "documented as public but not in hpcpar.__all__"


def test_documented_names_parser_sees_continuation_lines():
    rst = (".. function:: hpcpar.a(x)\n              hpcpar.b(y)\n\n   text hpcpar.c\n"
           ".. data:: hpcpar.D\n")
    assert documented_names(rst) == ["hpcpar.a", "hpcpar.b", "hpcpar.D"]


def test_every_option_has_a_doc_comment_in_config_py():
    """docs/configuration.rst's options table is generated from these ``#:`` comments."""
    source = (ROOT / "hpcpar" / "config.py").read_text()
    lines = source.splitlines()
    comment_lines = {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                     if tok.type == tokenize.COMMENT and tok.string.startswith("#:")}
    undocumented = []
    for f in dataclasses.fields(Options):
        lineno = next(i for i, line in enumerate(lines, 1) if re.match(rf"^    {f.name}:", line))
        if lineno - 1 not in comment_lines:
            undocumented.append(f.name)
    assert undocumented == []


def sphinx_build(tmp_path: Path, extra_page: str | None = None) -> subprocess.CompletedProcess:
    """Build a copy of docs/ as scripts/docs does (sphinx and numpydoc are in the test extra)."""
    src = tmp_path / "docs"
    shutil.copytree(DOCS, src, ignore=shutil.ignore_patterns("_build", "api"))
    if extra_page is not None:
        (src / "extra.rst").write_text(extra_page)
        index = src / "index.rst"
        index.write_text(index.read_text() + "\n.. toctree::\n   :hidden:\n\n   extra\n")
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-E", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(src), str(tmp_path / "html")],
        check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path)


def page_text(path: Path) -> str:
    """A built page's text, without tags (inline literals split words into spans)."""
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))


def test_docs_build_with_warnings_as_errors(tmp_path):
    proc = sphinx_build(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = tmp_path / "html"
    # the tables are generated from the code at build time
    slurm = page_text(out / "backends" / "slurm.html")
    assert "#SBATCH --mem=4096M" in slurm and "#SBATCH --partition=short" in slurm
    assert "OUT_OF_MEMORY" in slurm
    pbs = page_text(out / "backends" / "pbs.html")
    assert "#PBS -l select=1:ncpus=1:mem=4096mb" in pbs and "#PBS -l mem=4096mb" in pbs
    assert "#BSUB -M 4096" in page_text(out / "backends" / "lsf.html")
    assert "#$ -l h_vmem=1024M" in page_text(out / "backends" / "sge.html")   # 4GB / 4 slots
    config = page_text(out / "configuration.html")
    for f in dataclasses.fields(Options):
        assert f"HPCPAR_{f.name.upper()}" in config
    api = (out / "api.html").read_text()
    for name in hpcpar.__all__:
        assert f'id="hpcpar.{name}"' in api


def test_docs_build_fails_on_a_broken_reference(tmp_path):
    proc = sphinx_build(tmp_path, "Extra\n=====\n\nSee :class:`hpcpar.NoSuchThing`.\n")
    assert proc.returncode != 0
    assert "hpcpar.NoSuchThing" in proc.stdout + proc.stderr
