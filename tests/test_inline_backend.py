"""The inline backend runs tasks in the driver's thread, so breakpoint() and debuggers work."""

import os
import subprocess
import sys
import textwrap
import threading
import traceback

import pytest

import hpcpar


def where(_):
    return os.getpid(), threading.get_ident()


def fail(x):
    local_marker = x * 2  # noqa: F841 - looked for in the frame below
    raise KeyError(x)


def test_tasks_run_in_the_drivers_process_and_thread():
    with hpcpar.Executor("inline") as ex:
        assert ex.submit(where, 0).result() == (os.getpid(), threading.get_ident())
        assert set(ex.map(where, range(5), chunksize=2)) == {(os.getpid(), threading.get_ident())}
        assert ex.map_reduce(abs, [-1, -2, 3], max) == 3


def test_task_exception_keeps_the_tasks_frames():
    with hpcpar.Executor("inline") as ex, pytest.raises(KeyError) as info:
        ex.submit(fail, 21).result()
    frames = [f for f, _ in traceback.walk_tb(info.value.__traceback__)]
    task_frame = next(f for f in frames if f.f_code.co_name == "fail")
    assert task_frame.f_locals["local_marker"] == 42     # what pdb.pm() would show


def test_breakpoint_in_a_task_stops_in_the_drivers_terminal(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent("""
        import hpcpar
        def task(x):
            y = x * 7
            breakpoint()
            return y
        with hpcpar.Executor("inline") as ex:
            print("result", ex.submit(task, 6).result())
    """))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HPCPAR_") and k != "PYTHONBREAKPOINT"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.run([sys.executable, str(script)], input="p ('seen', y)\nc\n",
                          capture_output=True, text=True, check=False, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "(Pdb)" in proc.stdout and "('seen', 42)" in proc.stdout, proc.stdout
    assert "result 42" in proc.stdout


def test_inline_is_listed_and_suggested(capsys):
    from hpcpar.cli import main

    assert main(["backends"]) == 0
    assert "inline" in capsys.readouterr().out
    with pytest.raises(hpcpar.ConfigError, match="did you mean 'inline'"):
        hpcpar.Executor("inlin")
