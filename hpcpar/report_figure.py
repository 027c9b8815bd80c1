"""The timeline picture of a run: one bar per chunk over time, coloured by outcome.

Drawn with matplotlib (the ``[report]`` extra) on a plain :class:`matplotlib.figure.Figure`,
never through ``pyplot``, so no global state and no display are touched. The PNG and the HTML
page show the same figure: the HTML page inlines it as SVG next to the text summary, so it is
one self-contained file with no JavaScript and nothing fetched, readable offline and small
(about 50 kB for 10 chunks, 250 kB for 400, against ~3.5 MB for any page embedding plotly.js),
and one plotting library serves both formats.

In the SVG each chunk's bar is a ``<g id="chunk-N" class="chunk OUTCOME">`` element with a
``<title>`` (the browser's tooltip: times, host, tasks, submissions).
"""

from __future__ import annotations

import html
import io
import os
import re
from typing import TYPE_CHECKING

from .errors import HpcparError
from .report import OUTCOMES, RunTimeline, summary_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INSTALL_HINT = "pip install 'hpcpar[report]'  (or: pip install matplotlib)"
COLOURS = {"ok": "#2ca02c", "task error": "#d62728", "partial": "#ff7f0e", "no result": "#bbbbbb"}
WAIT_COLOUR = "#555555"


def _matplotlib():
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch
    except ImportError as exc:
        raise HpcparError(f"the run timeline picture needs matplotlib, which is not installed: "
                          f"{INSTALL_HINT}") from exc
    return Figure, Line2D, Patch


def _bar_span(tl: RunTimeline, c) -> tuple[float, float]:
    """(left, width) of chunk ``c``'s bar in seconds: its run, else from its first submission
    to the end of the record (a chunk without result), else nothing at time 0."""
    if c.started is not None:
        end = c.finished if c.finished is not None else tl.end_s
        return c.started, max(0.0, end - c.started)
    if c.submitted is not None:
        return c.submitted, max(0.0, tl.end_s - c.submitted)
    return 0.0, 0.0


def figure(tl: RunTimeline) -> Figure:
    """The run's timeline.

    Parameters
    ----------
    tl : RunTimeline
        From :func:`hpcpar.report.load_timeline`.

    Returns
    -------
    matplotlib.figure.Figure
        One axes: x in seconds since the run was created, y the chunk index (0 at the top).
        ``ax.containers[0]`` is the ``BarContainer`` with one ``Rectangle`` per chunk, in chunk
        order, each with gid ``chunk-N``; queue waits (submission to start) are thin grey lines,
        later submissions of a chunk (retries, requeues) black ticks on its row.

    Raises
    ------
    HpcparError
        matplotlib is not installed (the message says how to install it).
    """
    Figure, Line2D, Patch = _matplotlib()
    n = len(tl.chunks)
    fig = Figure(figsize=(10, min(20.0, max(3.0, 1.6 + 0.28 * n))), layout="constrained")
    ax = fig.add_subplot()
    spans = [_bar_span(tl, c) for c in tl.chunks]
    bars = ax.barh([c.index for c in tl.chunks], [w for _, w in spans],
                   left=[x for x, _ in spans], height=0.7,
                   color=[COLOURS[c.outcome] for c in tl.chunks], edgecolor="black",
                   linewidth=0.4 if n <= 200 else 0.0)
    for c, bar in zip(tl.chunks, bars.patches, strict=False):
        bar.set_gid(f"chunk-{c.index}")
        if c.outcome == "no result":
            bar.set_hatch("//")
    waits = [(c.index, c.submitted, c.submitted + c.queue_wait_s) for c in tl.chunks
             if c.submitted is not None and c.queue_wait_s is not None]
    if waits:
        rows, starts, ends = zip(*waits, strict=True)
        ax.hlines(rows, starts, ends, colors=WAIT_COLOUR,
                  linewidth=1.2 if n <= 100 else 0.4)
    resubs = [(t, c.index) for c in tl.chunks for t in c.resubmitted]
    if resubs:
        ax.plot([t for t, _ in resubs], [i for _, i in resubs], linestyle="none", marker="|",
                markersize=14, markeredgewidth=2.5, color="black", gid="resubmissions")
    if n <= 60:
        for c in tl.chunks:
            if c.submissions > 1:
                x, w = _bar_span(tl, c)
                ax.annotate(f"{c.submissions} submissions", (x + w, c.index), xytext=(4, 0),
                            textcoords="offset points", va="center", fontsize=8)
    ax.set_ylim(n - 0.5, -0.5)                 # chunk 0 at the top
    if n <= 40:
        ax.set_yticks(range(n))
    ax.set_xlim(left=0)
    ax.set_xlabel("seconds since the run was created")
    ax.set_ylabel("chunk (array task index)")
    ax.set_title(f"{tl.run_id}\n{tl.backend}, {n} chunks, state {tl.state}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    present = [o for o in OUTCOMES if any(c.outcome == o for c in tl.chunks)]
    handles = [Patch(facecolor=COLOURS[o], edgecolor="black", hatch="//" if o == "no result" else None,
                     label=o) for o in present]
    handles.append(Line2D([], [], color=WAIT_COLOUR, label="queue wait"))
    if resubs:
        handles.append(Line2D([], [], linestyle="none", marker="|", markersize=10,
                              markeredgewidth=2, color="black", label="resubmitted"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              title="outcome", title_fontsize=8)
    return fig


def write_png(tl: RunTimeline, path: str | os.PathLike, dpi: int = 100) -> None:
    """Write the timeline as a PNG (``dpi`` dots per inch; the figure is 10 inches wide)."""
    figure(tl).savefig(path, format="png", dpi=dpi)


def _svg(tl: RunTimeline) -> str:
    buf = io.StringIO()
    figure(tl).savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]              # drop the XML declaration and DOCTYPE (HTML5)
    by_index = {c.index: c for c in tl.chunks}

    def titled(m: re.Match) -> str:
        c = by_index[int(m.group(1))]
        tip = (f"chunk {c.index}: {c.outcome}; {c.done}/{c.n_tasks} tasks on {c.host or '?'}; "
               f"submitted {_t(c.submitted)}, started {_t(c.started)}, finished {_t(c.finished)}; "
               f"{c.submissions} submission(s)")
        return (f'<g id="chunk-{c.index}" class="chunk {c.outcome.replace(" ", "-")}">'
                f"<title>{html.escape(tip)}</title>")

    return re.sub(r'<g id="chunk-(\d+)">', titled, svg)


def _t(x: float | None) -> str:
    return "?" if x is None else f"{x:.1f} s"


def write_html(tl: RunTimeline, path: str | os.PathLike) -> None:
    """Write one self-contained HTML page: the text summary and the timeline as inline SVG."""
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>hpcpar report {html.escape(tl.run_id)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}
svg {{ max-width: 100%; height: auto; }}
</style>
</head>
<body>
<h1>hpcpar report: {html.escape(tl.run_id)}</h1>
<figure id="timeline">
{_svg(tl)}
<figcaption>One bar per chunk, from the worker's start to its last write, coloured by outcome;
grey lines are queue waits (submission to start), black ticks later submissions (retries).
Hover a bar for its details.</figcaption>
</figure>
<pre id="summary">{html.escape(summary_text(tl, max_rows=len(tl.chunks)))}</pre>
</body>
</html>
"""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(page)


__all__ = ["INSTALL_HINT", "figure", "write_html", "write_png"]
