"""The documentation: every public name is in the API reference, every option is documented
where it is defined, the Sphinx build passes with warnings as errors (``scripts/docs``), and
the recipe in docs/big-data.rst runs as written on ``local`` and on the real SLURM.

The builds run on a copy of ``docs/`` in a temporary folder, so nothing is written into the
checkout (autosummary generates pages next to its sources).
"""

from __future__ import annotations

import dataclasses
import html
import io
import json
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

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


# -- the recipe in docs/big-data.rst runs as written ---------------------------------------------
def big_data_recipe(tmp_path: Path, backend: str, options: dict) -> dict:
    """Run big-data.rst's code block with a small array, a temporary path and ``backend``;
    return what it computed and how often each process loaded the file."""
    rst = (DOCS / "big-data.rst").read_text()
    block = rst.split(".. code-block:: python\n\n", 1)[1].split("\nOn a 2-CPU", 1)[0]
    code = "\n".join(line[3:] for line in block.splitlines())
    replacements = {
        '"/shared/me/X.npy"': repr(str(tmp_path / "X.npy")),
        "size=(100_000, 200)": "size=(1_000, 200)",
        'hpcpar.Executor("slurm", mem="2GB")': f"hpcpar.Executor({backend!r}, **{options!r})",
        "    if path not in _cache:\n":
            "    if path not in _cache:\n"
            f"        open({str(tmp_path / 'loads')!r}, 'a').write(f'{{os.getpid()}}\\n')\n",
    }
    for old, new in replacements.items():
        assert old in code, f"docs/big-data.rst no longer has {old!r}; update this test"
        code = code.replace(old, new)
    code = "import json, os\n" + code + (
        "\n    print(json.dumps({'ok': bool(np.allclose(means, X.mean(axis=0))),"
        " 'run_id': ex.run_ids[-1]}))\n")
    script = tmp_path / "recipe.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], check=False, capture_output=True,
                          text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["loads"] = (tmp_path / "loads").read_text().split()
    return out


def test_big_data_recipe_on_local_loads_once_per_worker_process(tmp_path):
    out = big_data_recipe(tmp_path, "local", {"max_workers": 2})
    assert out["ok"]
    assert 1 <= len(out["loads"]) <= 2
    assert len(set(out["loads"])) == len(out["loads"])      # never twice in one process


@pytest.mark.slurm
def test_big_data_recipe_on_slurm_loads_once_per_array_task(slurm, tmp_path, runs_dir):
    out = big_data_recipe(tmp_path, "slurm", {"mem": "500MB", "walltime": "5min",
                                              "runs_dir": str(runs_dir)})
    assert out["ok"]
    meta = json.loads((runs_dir / out["run_id"] / "run.json").read_text())
    assert meta["n_chunks"] > 1
    # the array tasks are workers that pull the chunks: each loads the array at most once,
    # however many chunks it runs (a worker that starts after the others took every chunk
    # loads nothing)
    workers = [w for sub in meta["submissions"] for w in sub["workers"]]
    assert 1 <= len(workers) < meta["n_chunks"]
    assert 1 <= len(out["loads"]) <= len(workers)
    assert len(set(out["loads"])) == len(out["loads"])
