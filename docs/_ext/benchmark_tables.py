"""``{benchmark-tables} NAME``: the tables a benchmark recorded with ``--json docs/benchmarks/NAME.json``, with
the command, commit, date and machine that made them; nothing on the performance page is typed by hand. A
second run of one benchmark (other options) is recorded as ``NAME.WHAT.json`` and shown with ``NAME.WHAT``."""

from __future__ import annotations

import json
import os

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.application import Sphinx

from benchmarks.tables import cell_text  # the benchmarks' own way of printing a cell

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class BenchmarkTables(Directive):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        path = os.path.join(HERE, "benchmarks", f"{self.arguments[0]}.json")
        self.state.document.settings.record_dependencies.add(path)
        with open(path) as f:
            record = json.load(f)
        made = nodes.paragraph()
        made += nodes.Text("Made by ")
        made += nodes.literal(text=record["command"])
        made += nodes.Text(f" at commit {record['commit']} on {record['date']}; {record['machine']}.")
        out: list[nodes.Node] = [made]
        for note in record["notes"]:
            out.append(nodes.paragraph(text=note))
        for table in record["tables"]:
            out.append(_table(table))
        return out


def _table(table: dict) -> nodes.table:
    node = nodes.table()
    node += nodes.title(text=table["title"])
    group = nodes.tgroup(cols=len(table["columns"]))
    node += group
    group.extend(nodes.colspec(colwidth=1) for _ in table["columns"])
    head, body = nodes.thead(), nodes.tbody()
    group += head
    group += body
    head += _row(table["columns"])
    for values in table["rows"]:
        body += _row([cell_text(v, spec) for v, spec in zip(values, table["formats"])])
    return node


def _row(cells: list[str]) -> nodes.row:
    row = nodes.row()
    for text in cells:
        entry = nodes.entry()
        entry += nodes.paragraph(text=text)
        row += entry
    return row


def setup(app: Sphinx) -> dict:
    app.add_directive("benchmark-tables", BenchmarkTables)
    return {"parallel_read_safe": True}
