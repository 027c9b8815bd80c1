"""A task's remote traceback names the user's file, line and source line (hpcpar.serialize).

cloudpickle 3.1.2 and later rename the ``co_filename`` of code pickled by value to
``<dynamic-code>``; these tests fail there without :mod:`hpcpar.serialize`. CI runs them with
the newest cloudpickle the bounds allow and with the oldest (tests/constraints-oldest.txt).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hpcpar.rundir import driver_python_path
from hpcpar.runstate import create_run
from hpcpar.serialize import dumps
from hpcpar.worker import EXIT_OK

SCRIPT = '''\
import sys
import traceback

import hpcpar
from helper import by_reference


def by_value(x):
    if x == 2:
        raise ValueError("bad item %d" % x)  # LINE-BY-VALUE
    return x


if __name__ == "__main__":
    fn = by_value if sys.argv[2] == "by_value" else by_reference
    with hpcpar.Executor(sys.argv[1]) as ex:
        try:
            list(ex.map(fn, range(4)))
        except Exception as exc:
            print("".join(traceback.format_exception(exc)))
        else:
            print("NO ERROR")
'''

HELPER = '''\
def by_reference(x):
    if x == 2:
        raise KeyError("missing %d" % x)  # LINE-BY-REFERENCE
    return x
'''


def _line_of(path: Path, marker: str) -> tuple[int, str]:
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if marker in line:
            return n, line.strip()
    raise AssertionError(marker)


@pytest.fixture
def script(tmp_path) -> Path:
    (tmp_path / "helper.py").write_text(HELPER)
    path = tmp_path / "script.py"
    path.write_text(SCRIPT)
    return path


def _run_script(script: Path, backend: str, which: str, **hpcpar_env: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCPAR_")} | hpcpar_env
    proc = subprocess.run([sys.executable, str(script), backend, which], capture_output=True,
                          text=True, timeout=120, cwd=script.parent, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("which,file,marker", [
    ("by_value", "script.py", "LINE-BY-VALUE"),          # defined in __main__: shipped by value
    ("by_reference", "helper.py", "LINE-BY-REFERENCE"),  # importable: shipped by reference
])
def test_traceback_from_a_script_names_file_line_and_source(script, which, file, marker):
    path = script.parent / file
    lineno, source = _line_of(path, marker)
    out = _run_script(script, "local", which)
    assert f'File "{path}", line {lineno}, in {which}' in out, out
    assert source in out, out
    assert "<dynamic-code>" not in out
    assert "The above exception was the direct cause" in out       # the remote traceback is the cause


@pytest.mark.slurm
def test_traceback_from_a_script_on_slurm(slurm, script, runs_dir):
    """The same through a real SLURM array task: the worker formats the traceback on the node."""
    lineno, source = _line_of(script, "LINE-BY-VALUE")
    out = _run_script(script, "slurm", "by_value", HPCPAR_RUNS_DIR=str(runs_dir),
                      HPCPAR_POLL_INTERVAL_S="0.5", HPCPAR_MAX_POLL_INTERVAL_S="2")
    assert f'File "{script}", line {lineno}, in by_value' in out, out
    assert source in out, out


def test_source_travels_with_the_payload(tmp_path):
    """The worker shows the source line even where it cannot read the driver's file (another
    machine, or the file edited or deleted since the map started)."""
    src = tmp_path / "gone.py"
    src.write_text(textwrap.dedent('''\
        def task(x):
            return 1 / x  # DIVIDE
        '''))
    namespace: dict = {"__name__": "__main__"}       # as in a script: pickled by value
    exec(compile(src.read_text(), str(src), "exec"), namespace)
    lineno, source = _line_of(src, "DIVIDE")
    rd = create_run(tmp_path / "runs", prefix="test",
                       meta={"mode": "map", "n_chunks": 1, "python_path": driver_python_path()})
    rd.write_function(dumps({"fn": namespace["task"], "mode": "map", "reducer": None}))
    rd.write_chunk(0, dumps([((0,), {})]))
    src.unlink()
    proc = subprocess.run([sys.executable, "-m", "hpcpar.worker", str(rd.path), "--chunk", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == EXIT_OK, proc.stderr
    ok, exc, tb = rd.read_result(0).outcomes[0]
    assert not ok and isinstance(exc, ZeroDivisionError)
    assert f'File "{src}", line {lineno}, in task' in tb, tb
    assert source in tb, tb


def test_nested_code_keeps_its_file_and_payload_is_plain_pickle(tmp_path):
    """Code objects nested in a by-value function (an inner function, a lambda) keep theirs."""
    src = tmp_path / "nested.py"
    src.write_text("def outer():\n    inner = lambda: 1 / 0\n    return inner\n")
    namespace: dict = {"__name__": "__main__"}
    exec(compile(src.read_text(), str(src), "exec"), namespace)
    fn = pickle.loads(dumps(namespace["outer"]))       # plain pickle.loads reads it
    assert fn.__code__.co_filename == str(src)
    assert fn().__code__.co_filename == str(src)
    assert fn().__code__.co_firstlineno == 2


def test_each_function_ships_only_the_lines_it_spans(tmp_path):
    """Two functions of one big file, pickled apart and loaded in one process: both tracebacks
    show their source, and neither payload carries the whole file."""
    filler = "".join(f"# filler line {i} {'x' * 60}\n" for i in range(2000))
    src = tmp_path / "big.py"
    src.write_text("def first(x):\n    return x / 0  # FIRST\n" + filler
                   + "def second(x):\n    return x[0]  # SECOND\n")
    namespace: dict = {"__name__": "__main__"}
    exec(compile(src.read_text(), str(src), "exec"), namespace)
    blobs = [dumps(namespace["first"]), dumps(namespace["second"])]
    assert all(len(b) < 2000 for b in blobs), [len(b) for b in blobs]
    (tmp_path / "blobs.pkl").write_bytes(pickle.dumps(blobs))
    src.unlink()
    code = (
        "import pickle, sys, traceback\n"
        "blobs = pickle.load(open(sys.argv[1], 'rb'))\n"
        "for blob in blobs:\n"
        "    try:\n"
        "        pickle.loads(blob)(1)\n"
        "    except Exception:\n"
        "        print(traceback.format_exc())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "blobs.pkl")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f'File "{src}", line 2, in first' in proc.stdout, proc.stdout
    assert "return x / 0  # FIRST" in proc.stdout
    assert f'File "{src}", line 2004, in second' in proc.stdout, proc.stdout
    assert "return x[0]  # SECOND" in proc.stdout
