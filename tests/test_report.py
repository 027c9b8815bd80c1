"""``hpcpar report``: the summary and the timeline picture of a run.

Offline: a run folder written with rundir's own API (the local backend keeps no run folder).
On the real SLURM: a small map with a task that raises, then ``hpcpar report`` on it. The HTML
page is loaded in headless Chromium (scripts/ci-chromium installs it).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.image as mpl_image  # the [report] extra is in [test]
import pytest

from hpcpar.cli import main
from hpcpar.report import OUTCOMES, load_timeline, summary_text
from hpcpar.report_figure import COLOURS, figure, write_html, write_png
from hpcpar.rundir import ChunkResult, RunDir, load_sealed
from hpcpar.runstate import Run, RunPhase, create_run

SVG = "{http://www.w3.org/2000/svg}"

# (started, finished, tasks done of 3, a task raised, host), seconds after creation;
# chunk 3 was retried once, chunk 5 never wrote a result.
CHUNKS = [(1.0, 4.0, 3, False, "node0"), (1.2, 6.5, 3, False, "node1"),
          (4.3, 7.0, 3, True, "node0"), (2.0, 12.0, 3, False, "node1"),
          (6.6, 8.0, 1, False, "node0")]
N_CHUNKS = 6
EXPECTED = ["ok", "ok", "task error", "ok", "partial", "no result"]


def make_run(root: Path, chunks=CHUNKS, value=lambda i: i) -> RunDir:
    rd = create_run(root, prefix="synthetic", meta={
        "backend": "slurm", "kind": "map", "job_name": "synthetic", "n_chunks": N_CHUNKS,
        "submissions": []})
    t0 = rd.read_meta()["created"]
    run = Run(rd, {}, rd.read_meta())              # run.json's one writer
    run.meta["submissions"] = [
        {"job_id": "101", "indices": list(range(N_CHUNKS)), "offset": 0, "reason": "initial",
         "time": t0 + 0.5},
        {"job_id": "107", "indices": [3], "offset": 0, "reason": "retry", "time": t0 + 9.0}]
    run.set_phase(RunPhase.FAILED)
    for i, (start, end, done, raised, host) in enumerate(chunks):
        outcomes = [(True, value(i), "")] * done
        if raised:
            outcomes[1] = (False, ValueError("boom"), "Traceback ...")
        rd.write_result(ChunkResult(chunk=i, n_tasks=3, outcomes=outcomes, done=done, host=host,
                                    started=t0 + start, finished=t0 + end, attempts=1 + (i == 3),
                                    task_seconds=[0.5 + i] * done))
    return rd


def test_timeline_reads_what_the_run_folder_records(tmp_path):
    rd = make_run(tmp_path)
    tl = load_timeline(rd.path)
    assert tl.run_id == rd.run_id and tl.state == "failed" and tl.backend == "slurm"
    assert [c.outcome for c in tl.chunks] == EXPECTED
    for c, (start, end, done, _, host) in zip(tl.chunks, CHUNKS, strict=False):
        assert c.host == host and c.done == done and c.n_tasks == 3
        assert c.queue_wait_s == pytest.approx(start - 0.5, abs=1e-6)
        assert c.run_s == pytest.approx(end - start, abs=1e-6)
    assert [c.submissions for c in tl.chunks] == [1, 1, 1, 2, 1, 1]
    assert [c.retries for c in tl.chunks] == [0, 0, 0, 1, 0, 0]
    assert tl.chunks[3].resubmitted == (pytest.approx(9.0),) and tl.chunks[2].resubmitted == ()
    last = tl.chunks[5]
    assert last.started is None and last.run_s is None and last.queue_wait_s is None
    assert last.submitted == pytest.approx(0.5, abs=1e-6)
    assert tl.end_s >= 12.0 - 1e-6
    assert [c.index for c in tl.slowest(3)] == [3, 1, 0]


def test_summary_text_names_waits_retries_hosts_and_slowest(tmp_path):
    tl = load_timeline(make_run(tmp_path).path)
    text = summary_text(tl, slowest=2)
    assert "chunks      6: ok 3, task error 1, partial 1, no result 1" in text
    assert "retries     1 (chunks 3)" in text
    assert "hosts       node0 (3), node1 (2)" in text
    waits = sorted(s - 0.5 for s, *_ in CHUNKS)
    assert f"max {waits[-1]:.1f} s, min {waits[0]:.1f} s over 5 chunk(s)" in text
    slow = text.split("slowest 2 chunk(s) by run time:\n")[1].splitlines()[:2]
    assert slow == ["  chunk 3: 10.0 s on node1, 3 task(s), 2 submissions",
                    "  chunk 1: 5.3 s on node1, 3 task(s)"]
    rows = [line.split() for line in text.splitlines() if re.match(r"^\s+\d+ ", line)]
    assert [r[0] for r in rows] == [str(i) for i in range(N_CHUNKS)]
    assert rows[2][1:4] == ["3/3", "node0", "0.5"] and rows[2][-2:] == ["task", "error"]
    assert "no readable result" in text and "only the first attempt's start" in text
    short = summary_text(tl, max_rows=2)
    assert "... 4 more chunk(s)" in short


def test_figure_has_one_bar_per_chunk_coloured_by_outcome(tmp_path):
    from matplotlib.colors import to_rgba

    tl = load_timeline(make_run(tmp_path).path)
    fig = figure(tl)
    ax = fig.axes[0]
    bars = ax.containers[0].patches
    assert len(bars) == N_CHUNKS
    for c, bar in zip(tl.chunks, bars, strict=False):
        assert bar.get_gid() == f"chunk-{c.index}"
        assert bar.get_facecolor() == pytest.approx(to_rgba(COLOURS[c.outcome]))
        assert bar.get_y() + bar.get_height() / 2 == pytest.approx(c.index)
        if c.started is not None:
            assert bar.get_x() == pytest.approx(c.started)
            assert bar.get_width() == pytest.approx(c.run_s)
    assert bars[5].get_hatch() == "//"                     # no result: from submission to the end
    assert bars[5].get_x() == pytest.approx(0.5) and bars[5].get_width() == pytest.approx(tl.end_s - 0.5)
    assert "seconds" in ax.get_xlabel() and "chunk" in ax.get_ylabel()
    assert ax.get_ylim() == (N_CHUNKS - 0.5, -0.5)         # chunk 0 at the top
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [*OUTCOMES, "queue wait", "resubmitted"]
    ticks = [line for line in ax.lines if line.get_gid() == "resubmissions"]
    assert [tuple(xy) for xy in ticks[0].get_xydata()] == [pytest.approx((9.0, 3))]
    waits = [c for c in ax.collections if len(c.get_segments()) == 5]
    assert len(waits) == 1                                 # one queue-wait line per started chunk


def test_png_is_written(tmp_path):
    out = tmp_path / "t.png"
    write_png(load_timeline(make_run(tmp_path / "runs").path), out, dpi=80)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = mpl_image.imread(out).shape[:2]
    assert width == 800 and height >= 240                  # 10 inches wide


def chunk_groups(svg_text: str) -> list[ET.Element]:
    root = ET.fromstring(svg_text)
    return [g for g in root.iter(SVG + "g") if g.get("id", "").startswith("chunk-")]


def test_html_is_self_contained_with_one_svg_bar_per_chunk(tmp_path):
    tl = load_timeline(make_run(tmp_path / "runs").path)
    out = tmp_path / "t.html"
    write_html(tl, out)
    page = out.read_text()
    assert "<script" not in page and "<link" not in page and "@import" not in page
    refs = re.findall(r'(?:href|src)="([^"]*)"|url\(([^)]*)\)', page)
    refs = [a or b for a, b in refs]                        # nothing fetched: only in-page refs
    assert all(r.startswith("#") for r in refs), refs
    svg = page[page.index("<svg"):page.index("</svg>") + len("</svg>")]
    groups = chunk_groups(svg)
    assert [g.get("id") for g in groups] == [f"chunk-{i}" for i in range(N_CHUNKS)]
    assert [g.get("class") for g in groups] == ["chunk " + o.replace(" ", "-") for o in EXPECTED]
    titles = [g.find(SVG + "title").text for g in groups]
    assert titles[3].startswith("chunk 3: ok; 3/3 tasks on node1") and "2 submission(s)" in titles[3]
    assert "no readable result" in page                    # the summary is on the page too


def test_results_with_unimportable_classes_are_still_timed(tmp_path, monkeypatch):
    mod = tmp_path / "mods" / "report_user_types_xyz.py"
    mod.parent.mkdir()
    mod.write_text("class Model:\n    def __init__(self, w):\n        self.w = w\n")
    monkeypatch.syspath_prepend(str(mod.parent))
    import report_user_types_xyz as user

    rd = make_run(tmp_path / "runs", value=lambda i: user.Model(i))
    monkeypatch.delitem(sys.modules, "report_user_types_xyz")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(mod.parent)])
    with pytest.raises(ModuleNotFoundError):                # what a plain reader would hit
        load_sealed(rd.result_path(0))
    tl = load_timeline(rd.path)
    assert [c.outcome for c in tl.chunks] == EXPECTED
    assert tl.chunks[3].run_s == pytest.approx(10.0)


def test_corrupt_result_is_reported_not_fatal(tmp_path):
    rd = make_run(tmp_path)
    path = rd.result_path(1)
    path.write_bytes(path.read_bytes()[:-10])
    tl = load_timeline(rd.path)
    assert tl.chunks[1].outcome == "no result" and "corrupt" in tl.chunks[1].note
    assert "corrupt results file" in summary_text(tl)


def test_cli_report_writes_png_and_html(tmp_path, capsys, monkeypatch):
    rd = make_run(tmp_path / "runs")
    monkeypatch.chdir(tmp_path)
    assert main(["report", rd.run_id, "--runs-dir", str(tmp_path / "runs"), "--png", "a.png",
                 "--html", "a.html"]) == 0
    out = capsys.readouterr().out
    assert "run time    median" in out and "wrote a.png" in out and "wrote a.html" in out
    assert (tmp_path / "a.png").stat().st_size > 1000 and (tmp_path / "a.html").stat().st_size > 1000
    assert main(["report", str(rd.path)]) == 0               # default: RUN_ID.png here
    assert (tmp_path / f"{rd.run_id}.png").is_file()
    before = sorted(os.listdir(tmp_path))
    assert main(["report", str(rd.path), "--no-picture"]) == 0
    assert sorted(os.listdir(tmp_path)) == before
    assert main(["report", str(rd.path), "--rows", "-1"]) == 2


def test_cli_report_without_matplotlib_says_how_to_install(tmp_path, capsys, monkeypatch):
    rd = make_run(tmp_path / "runs")
    monkeypatch.chdir(tmp_path)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import matplotlib -> ImportError
    assert main(["report", str(rd.path), "--html", "a.html"]) == 2
    captured = capsys.readouterr()
    assert "chunks      6:" in captured.out                 # the summary needs no matplotlib
    assert "pip install 'hpcpar[report]'" in captured.err
    assert not (tmp_path / "a.html").exists()


# -- headless Chromium ---------------------------------------------------------------------
def load_in_chromium(chromium: str, page: Path) -> tuple[str, list[str]]:
    """(the DOM after load, the browser's console messages) for a local page."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
             "--dump-dom", page.resolve().as_uri()],
            check=False, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc.stdout, console


def test_chromium_console_check_can_fail(chromium, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>undefinedFunction();</script></body></html>")
    _, console = load_in_chromium(chromium, bad)
    assert any("undefinedFunction is not defined" in line for line in console)


def check_html_in_chromium(chromium: str, page: Path, n_chunks: int) -> None:
    dom, console = load_in_chromium(chromium, page)
    assert console == []
    ids = re.findall(r'<g id="(chunk-\d+)"', dom)
    assert ids == [f"chunk-{i}" for i in range(n_chunks)]
    assert 'id="summary"' in dom


def test_html_loads_in_headless_chromium(chromium, tmp_path):
    out = tmp_path / "t.html"
    write_html(load_timeline(make_run(tmp_path / "runs").path), out)
    check_html_in_chromium(chromium, out, N_CHUNKS)


# -- the real SLURM ------------------------------------------------------------------------
def square_or_raise(x):
    time.sleep(0.3)                     # bars wide enough to see in the picture
    if x == 7:                          # in the last chunk: map raises once every chunk is done
        raise ValueError("seven")
    return x * x


@pytest.mark.slurm
def test_report_on_a_finished_slurm_run(slurm, chromium, runs_dir, tmp_path):
    import hpcpar

    with hpcpar.Executor("slurm", runs_dir=str(runs_dir), job_name="report", walltime="5:00",
                         poll_interval_s=0.5, max_poll_interval_s=2.0) as ex:
        with pytest.raises(ValueError, match="seven"):
            list(ex.map(square_or_raise, range(8), chunksize=2))
        run_id = ex.run_ids[0]
    png, page = tmp_path / "slurm.png", tmp_path / "slurm.html"
    proc = subprocess.run([sys.executable, "-m", "hpcpar", "report", run_id, "--runs-dir",
                           str(runs_dir), "--png", str(png), "--html", str(page)],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    print(proc.stdout)
    assert f"run         {run_id}" in proc.stdout
    assert "chunks      4: ok 3, task error 1" in proc.stdout
    tl = load_timeline(run_id, runs_dir)
    assert [c.outcome for c in tl.chunks] == ["ok", "ok", "ok", "task error"]
    for c in tl.chunks:
        assert c.host == socket.gethostname() and c.done == 2 and c.submissions == 1
        assert c.queue_wait_s is not None and c.run_s is not None
        assert 0 <= c.submitted <= c.submitted + c.queue_wait_s <= c.finished <= tl.end_s
    assert len(figure(tl).axes[0].containers[0].patches) == 4
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = page.read_text()
    assert len(chunk_groups(svg[svg.index("<svg"):svg.index("</svg>") + 6])) == 4
    check_html_in_chromium(chromium, page, 4)
