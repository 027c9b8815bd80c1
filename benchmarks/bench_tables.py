"""The tables of ``benchmarks/peers.py``: medians, ratios, scheduler calls, memory, as plain
text and as Markdown. Pure: takes the measurements (one dict per run, as the child printed them)
and returns text."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchmarks import workloads

__all__ = ["Report", "fmt_bytes", "fmt_calls", "fmt_s", "report"]

Runs = dict[tuple[str, str], list[dict]]
WARM_ROW = "W2 warm"
WARM_PEERS = {"hpcpar", "hpcpar-half", "hpcpar-local", "joblib", "dask"}
# Columns: (title, peer, which run: "cold" = the first on a new executor, "warm" = the second).
SLURM_COLUMNS = [("hpcpar default", "hpcpar", "cold"),
                 ("hpcpar chunksize=n/2", "hpcpar-half", "cold"),
                 ("submitit, 2 hand-made chunks", "submitit-chunks", "cold"),
                 ("submitit map_array", "submitit-array", "cold"),
                 ("dask-jobqueue cold", "dask", "cold"),
                 ("dask-jobqueue warm", "dask", "warm")]
LOCAL_COLUMNS = [("hpcpar local", "hpcpar-local", "cold"), ("joblib (loky)", "joblib", "cold")]
DASH = "\u2013"  # en dash: no value in this cell
_SHORT = {"sbatch": "sb", "squeue": "sq", "scontrol": "sco", "scancel": "sca", "sacct": "sac"}


@dataclass
class Report:
    plain: str
    markdown: str


def fmt_s(x: float) -> str:
    return f"{x:.2f}"


def fmt_bytes(n: float) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e3:,.0f} kB"


def fmt_calls(per_cmd: dict[str, float], in_jobs: float) -> str:
    total = sum(per_cmd.values())
    parts = [f"{_SHORT.get(c, c)} {v:g}" for c, v in per_cmd.items() if v]
    text = f"{total:g}" + (f" ({', '.join(parts)})" if parts else "")
    return text + (f" +{in_jobs:g} in jobs" if in_jobs else "")


def _source(row: str, peer: str, mode: str) -> tuple[str, str, str] | None:
    """Which measurements fill a cell: (peer, workload, mode), or None for a dash."""
    if row != WARM_ROW:
        return peer, row, mode
    if peer == "dask":                 # dask's warm W2 is its warm column; its cold one is W2's
        return (peer, "W2", "warm") if mode == "warm" else None
    if peer not in WARM_PEERS:         # submitit keeps no workers
        return None
    return peer, "W2", "warm"          # hpcpar and joblib: the second map on the same executor


def _ok(runs: list[dict], mode: str) -> list[dict]:
    key = "warm_wall_s" if mode == "warm" else "wall_s"
    return [r for r in runs if not r.get("error") and r.get(key) is not None]


def _cell(runs: Runs, src: tuple[str, str, str] | None,
          value: Callable[[list[dict], str], str | None]) -> str:
    if src is None or (src[0], src[1]) not in runs:
        return DASH
    peer, key, mode = src
    all_runs = runs[(peer, key)]
    good = _ok(all_runs, mode)
    if not good:
        errors = [r.get("error") or "no warm run" for r in all_runs]
        return "error: " + _short(errors[0])
    text = value(good, mode) or DASH
    if len(good) < len(all_runs):
        text += f" [{len(all_runs) - len(good)}/{len(all_runs)} failed]"
    return text


def _short(msg: str, n: int = 70) -> str:
    msg = " ".join(msg.split()).replace("|", "/")
    return msg if len(msg) <= n else msg[: n - 1] + "…"


def _median(good: list[dict], field: str) -> float | None:
    vals = [r[field] for r in good if r.get(field) is not None]
    return statistics.median(vals) if vals else None


def _wall(good: list[dict], mode: str) -> float | None:
    return _median(good, "warm_wall_s" if mode == "warm" else "wall_s")


def _rows(keys: Sequence[str]) -> list[str]:
    rows: list[str] = []
    for k in keys:
        rows.append(k)
        if k == "W2":
            rows.append(WARM_ROW)
    return rows


def _label(row: str, scale: str) -> str:
    if row == WARM_ROW:
        return "W2 again, warm executor"
    return f"{row}: {workloads.title(row, scale)}"


def _wall_table(runs: Runs, rows: list[str], columns: list, scale: str, slots: int,
                base: str) -> list[list[str]]:
    out = [["workload", "ideal", *[c[0] for c in columns]]]
    for row in rows:
        ideal = None if row == WARM_ROW else workloads.ideal_s(row, scale, slots)
        base_src = _source(row, base, "cold")
        base_good = _ok(runs.get((base_src[0], base_src[1]), []), base_src[2]) if base_src else []
        base_s = _wall(base_good, base_src[2]) if base_src and base_good else None

        def wall_text(good: list[dict], mode: str, base_s: float | None = base_s) -> str | None:
            s = _wall(good, mode)
            if s is None:
                return None
            return fmt_s(s) + (f" ({s / base_s:.2f}x)" if base_s else "")

        out.append([_label(row, scale), fmt_s(ideal) if ideal else DASH,
                    *[_cell(runs, _source(row, p, m), wall_text) for _, p, m in columns]])
    return out


def _metric_table(runs: Runs, rows: list[str], columns: list, scale: str,
                  value: Callable[[list[dict], str], str | None]) -> list[list[str]]:
    out = [["workload", *[c[0] for c in columns]]]
    for row in rows:
        out.append([_label(row, scale),
                    *[_cell(runs, _source(row, p, m), value) for _, p, m in columns]])
    return out


def _calls(good: list[dict], mode: str) -> str:
    field = "warm_calls" if mode == "warm" else "calls"
    cmds = sorted({c for r in good for c in r.get(field, {})},
                  key=lambda c: list(_SHORT).index(c) if c in _SHORT else 99)
    per = {c: statistics.median(r.get(field, {}).get(c, 0) for r in good) for c in cmds}
    jobs = statistics.median(r.get(f"{field}_in_jobs", 0) for r in good)
    return fmt_calls(per, jobs)


def _peak(good: list[dict], mode: str) -> str | None:
    v = _median(good, "peak_rss_bytes")
    return fmt_bytes(v) if v is not None and mode == "cold" else None


def _run_dir(good: list[dict], mode: str) -> str | None:
    v = _median(good, "run_dir_bytes")
    return fmt_bytes(v) if v is not None and mode == "cold" else None


def _close(good: list[dict], mode: str) -> str | None:
    v = _median(good, "close_s")
    return fmt_s(v) if v is not None and mode == "cold" else None


def _plain(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    lines.insert(1, "|" + "---|" * len(rows[0]))
    return "\n".join(lines)


def report(header: list[str], runs: Runs, peers: Sequence[str], keys: Sequence[str],
           scale: str, slots: int) -> Report:
    """All tables for ``runs`` (``{(peer, workload): [one dict per run]}``)."""
    rows = _rows(keys)
    sections: list[tuple[str, list[list[str]]]] = []
    slurm = [c for c in SLURM_COLUMNS if c[1] in peers]
    local = [c for c in LOCAL_COLUMNS if c[1] in peers]
    if slurm:
        sections.append((("SLURM: median wall seconds from creating the executor or cluster to "
                         "the last result (ratio to hpcpar default)"),
                         _wall_table(runs, rows, slurm, scale, slots, "hpcpar")))
    if local:
        sections.append(("Local: median wall seconds (ratio to hpcpar local)",
                         _wall_table(runs, rows, local, scale, slots, "hpcpar-local")))
    if slurm:
        sections.append((("Scheduler calls per run, from the driver (median; sb sbatch, sq squeue, "
                         "sco scontrol, sca scancel, sac sacct; cold columns include closing)"),
                         _metric_table(runs, rows, slurm, scale, _calls)))
    both = slurm + local
    cold = [c for c in both if c[2] == "cold"]
    if cold:
        sections.append((("Driver peak memory (max RSS of the measuring process, median; it "
                         "holds the workload's inputs, e.g. BIG's array)"),
                         _metric_table(runs, rows, cold, scale, _peak)))
        sections.append((("Run folder size after the last result (hpcpar's runs_dir, submitit's "
                         "folder)"), _metric_table(runs, rows, cold, scale, _run_dir)))
        sections.append((("Seconds to close after the last result (leaving the `with` block, "
                         "cluster.close())"), _metric_table(runs, rows, cold, scale, _close)))
    errors = sorted({f"{p} {k} ({i + 1}): {r['error']}" for (p, k), rs in runs.items()
                     for i, r in enumerate(rs) if r.get("error")})
    plain = ["\n".join(header)]
    md = ["\n".join(f"    {h}" for h in header)]
    for title, table in sections:
        plain.append(f"{title}\n{_plain(table)}")
        md.append(f"**{title}**\n\n{_markdown(table)}")
    if errors:
        plain.append("Errors:\n" + "\n".join(f"  {e}" for e in errors))
        md.append("**Errors**\n\n" + "\n".join(f"- {_short(e, 300)}" for e in errors))
    return Report("\n\n".join(plain) + "\n", "\n\n".join(md) + "\n")
