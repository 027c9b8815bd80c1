"""Sphinx directives whose tables are generated from hpcpar's code at build time.

So the documentation cannot drift from what the code does:

``.. hpcpar-options::``
    Every field of :class:`hpcpar.config.Options`: type, default, environment variable and the
    ``#:`` comment above it in ``hpcpar/config.py``. A field without a comment fails the build.
``.. hpcpar-resources:: BACKEND``
    What each resource renders as in BACKEND's job script: the shipped template is rendered
    with and without the resource (``Backend.job_script``) and the lines that differ are shown.
    ``:dialects: pro torque`` adds one column per PBS dialect; each line of the directive's
    content is one more row, a Python dict literal (``{"extra_directives": ["-m e"]}``).
    A resource field no row exercises fails the build.
``.. hpcpar-states:: MODULE:CLASS.ATTR``
    A native-state table of a scheduler spec (``hpcpar.backends.slurm:SlurmSpec.STATES``), one
    row per source line, with that line's comment (the documentation it comes from).
``.. hpcpar-script:: BACKEND``
    A whole job script as a run would submit it (``:dialect:``, ``:values:`` a dict literal).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import io
import logging
import tokenize
from collections.abc import Mapping
from typing import ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.errors import ExtensionError
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docutils import SphinxDirective

#: a run folder as a real run would have it (the job script's logs and worker lines use it)
RUN_DIR = "/home/me/.local/share/hpcpar/runs/fit-20261129-120000-3fa9c1"
#: rows every backend's resources table has: (values asked for)
DEFAULT_ROWS: list[dict] = [
    {"cpus_per_task": 4},
    {"mem": "4GB"},
    {"mem": "4GB", "cpus_per_task": 4},
    {"walltime": "1:30:00"},
    {"walltime": "2-00:00:00"},
    {"gpus": 1},
    {"nodes": 2, "cpus_per_task": 4},
    {"queue": "short"},
    {"account": "myproject"},
    {"qos": "high"},
    {"setup": ["module load python/3.11"]},
]


# -- helpers -----------------------------------------------------------------------------------
def _literal(text: str) -> str:
    """``text`` as an inline literal (RST has no escape inside ``...``; none of ours needs one)."""
    return f"``{text}``" if text.strip() else ""


def _escape(text: str) -> str:
    """Plain text (a source comment) made safe inside RST: no markup, no references."""
    for ch in "\\*`_|":
        text = text.replace(ch, "\\" + ch)
    return text


def _list_table(header: list[str], rows: list[list[str]], widths: str = "auto") -> list[str]:
    """RST lines of a ``list-table``; a cell is RST text and may span several lines."""
    out = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [header, *rows]:
        for i, cell in enumerate(row):
            lines = cell.splitlines() or [""]
            out.append(("   * - " if i == 0 else "     - ") + lines[0])
            out.extend("       " + line for line in lines[1:])
    return out


def _line_block(lines: list[str]) -> str:
    return "\n".join(f"| {_literal(line)}" for line in lines)


class _Directive(SphinxDirective):
    def parse_rst(self, lines: list[str]) -> list[nodes.Node]:
        container = nodes.container()
        source = self.get_source_info()[0]
        self.state.nested_parse(StringList(lines, source=source), self.content_offset, container)
        return container.children

    def fail(self, message: str):
        raise ExtensionError(f"{self.get_location()}: {self.name}: {message}")


# -- options -----------------------------------------------------------------------------------
def option_rows() -> list[tuple[str, str, str, str]]:
    """(name, type, default, description) of every Options field; error if one is undocumented."""
    from hpcpar.config import Options

    docs = ModuleAnalyzer.for_module("hpcpar.config").find_attr_docs()
    rows, missing = [], []
    for f in dataclasses.fields(Options):
        lines = docs.get(("Options", f.name))
        text = " ".join(line.strip() for line in lines or [] if line.strip())
        if not text:
            missing.append(f.name)
        rows.append((f.name, str(f.type), repr(f.default), text))
    if missing:
        raise ExtensionError(f"hpcpar/config.py: Options field(s) {missing} have no `#:` comment; "
                             "document each option where it is defined")
    return rows


class OptionsDirective(_Directive):
    has_content = False

    def run(self):
        rows = [[f"``{name}``\n\n``HPCPAR_{name.upper()}``",
                 f"{_literal(typ)}\n\n{_literal(default)}", text]
                for name, typ, default, text in option_rows()]
        return self.parse_rst(_list_table(["option, environment", "type, default", "meaning"],
                                          rows, widths="28 14 58"))


# -- resources ---------------------------------------------------------------------------------
class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def render_script(backend: str, values: Mapping, dialect: str | None = None,
                  command: list[str] | None = None) -> tuple[str, list[str]]:
    """The job script ``backend`` renders for ``values`` (resources and options), and the
    warnings hpcpar logged while rendering it."""
    from hpcpar import backends
    from hpcpar.config import OPTION_NAMES, Options
    from hpcpar.resources import Resources

    res = {k: v for k, v in values.items() if k in Resources.FIELDS}
    opts = {k: v for k, v in values.items() if k in OPTION_NAMES}
    unknown = set(values) - set(res) - set(opts)
    if unknown:
        raise ExtensionError(f"unknown resource or option {sorted(unknown)} in a docs table")
    opts.setdefault("python", "python3")           # not this machine's interpreter path
    opts.setdefault("job_name", "fit")
    if dialect:
        opts["dialect"] = dialect                  # never run `qstat --version` at build time
    be = backends.create(backend, Resources.from_user(res), Options(**opts))
    log = logging.getLogger("hpcpar")
    capture = _Capture()
    log.addHandler(capture)
    propagate, log.propagate = log.propagate, False
    try:
        text = be.job_script(command, run_dir=RUN_DIR)
    finally:
        log.removeHandler(capture)
        log.propagate = propagate
    return text, capture.messages


def _added_lines(base: str, other: str) -> list[str]:
    remaining = base.splitlines()
    added = []
    for line in other.splitlines():
        if line in remaining:
            remaining.remove(line)
        elif line.strip():
            added.append(line)
    return added


def _call_text(values: Mapping) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


class ResourcesDirective(_Directive):
    required_arguments = 1
    has_content = True
    option_spec: ClassVar[dict] = {"dialects": directives.unchanged}

    def run(self):
        from hpcpar.resources import Resources

        backend = self.arguments[0]
        dialects = (self.options.get("dialects") or "").split() or [None]
        rows_in = list(DEFAULT_ROWS)
        for line in self.content:
            if line.strip():
                try:
                    rows_in.append(ast.literal_eval(line.strip()))
                except (ValueError, SyntaxError) as exc:
                    self.fail(f"row {line!r} is not a dict literal: {exc}")
        covered = {k for r in rows_in for k in r}
        missing = [f for f in Resources.FIELDS if f not in covered]
        if missing:
            self.fail(f"no row shows resource(s) {missing}; add one")
        bases = {d: render_script(backend, {}, d)[0] for d in dialects}
        rows = []
        for values in rows_in:
            row = [_literal(_call_text(values))]
            for d in dialects:
                text, warnings = render_script(backend, values, d)
                added = _added_lines(bases[d], text)
                cell = _line_block(added) if added else "*not rendered*"
                if warnings:
                    cell += "\n\n" + "; ".join(f"hpcpar logs: *{w}*" for w in warnings)
                row.append(cell)
            rows.append(row)
        header = ["asked for"] + [f"``dialect={d!r}``" if d else "rendered as" for d in dialects]
        return self.parse_rst(_list_table(header, rows))


class ScriptDirective(_Directive):
    required_arguments = 1
    option_spec: ClassVar[dict] = {"dialect": directives.unchanged, "values": directives.unchanged}

    def run(self):
        values = ast.literal_eval(self.options.get("values", "{}"))
        text, _ = render_script(self.arguments[0], values, self.options.get("dialect"))
        block = nodes.literal_block(text, text)
        block["language"] = "bash"
        return [block]


# -- states ------------------------------------------------------------------------------------
def state_rows(target: str) -> tuple[list[str], list[tuple[list, str, str]]]:
    """(comment lines above the table, rows of (native keys on one source line, JobState, note)).

    The rows come from the dict literal assigned to ``CLASS.ATTR`` in MODULE's source; the
    states from the live table, which must have exactly the keys the source shows.
    """
    modname, _, path = target.partition(":")
    clsname, _, attr = path.partition(".")
    module = importlib.import_module(modname)
    table = getattr(getattr(module, clsname), attr)
    source = inspect.getsource(module)
    comments: dict[int, str] = {}
    full_line: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
            if not tok.line[:tok.start[1]].strip():
                full_line.add(tok.start[0])
    cls = next(n for n in ast.walk(ast.parse(source))
               if isinstance(n, ast.ClassDef) and n.name == clsname)
    node = None
    for stmt in cls.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
        named = any(isinstance(t, ast.Name) and t.id == attr for t in targets)
        if named and isinstance(stmt.value, ast.Dict):
            node = stmt
    if node is None:
        raise ExtensionError(f"{target}: no dict literal assigned to {attr} in {clsname}")
    lead = []
    line = node.lineno - 1
    while line in full_line:
        lead.insert(0, comments[line])
        line -= 1
    by_line: dict[int, list] = {}
    for key in node.value.keys:
        by_line.setdefault(key.lineno, []).append(ast.literal_eval(key))
    seen = [k for keys in by_line.values() for k in keys]
    if sorted(map(str, seen)) != sorted(map(str, table)):
        raise ExtensionError(f"{target}: the source's keys and the live table differ")
    rows, group = [], ""
    for lineno in range(node.lineno, node.end_lineno + 1):
        if lineno in full_line:
            group = comments[lineno]
        if lineno not in by_line:
            continue
        keys = by_line[lineno]
        states = {table[k].name for k in keys}
        if len(states) != 1:
            raise ExtensionError(f"{target}: line {lineno} maps its keys to several states "
                                 f"{states}")
        note = comments.get(lineno) if lineno not in full_line else None
        rows.append((keys, states.pop(), note if note is not None else group))
    return lead, rows


class StatesDirective(_Directive):
    required_arguments = 1
    option_spec: ClassVar[dict] = {"header": directives.unchanged}

    def run(self):
        lead, rows = state_rows(self.arguments[0])
        header = self.options.get("header", "native state")
        rows = [[", ".join(_literal(str(k)) for k in keys), f"``{state}``", _escape(note)]
                for keys, state, note in rows]
        table = _list_table([header, ":class:`~hpcpar.JobState`",
                             "meaning (from the source's comments)"], rows, widths="25 20 55")
        intro = []
        if lead:
            intro = ["Source: " + _escape(" ".join(lead)), ""]
        return self.parse_rst(intro + table)


def setup(app):
    app.add_directive("hpcpar-options", OptionsDirective)
    app.add_directive("hpcpar-resources", ResourcesDirective)
    app.add_directive("hpcpar-script", ScriptDirective)
    app.add_directive("hpcpar-states", StatesDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
