"""The pass manager: runs a pipeline, verifies after every pass, times it, records what changed
and writes the per-pass IR dumps.

A pass is a plain `Graph -> Graph` function that never mutates its input (it returns the same
object when it changes nothing). A pass that has more to say than the structural diff (for
example "53 folded, 0 declined") calls `note(...)`; the manager collects those lines into the
pass's record and its dump header.
"""

from __future__ import annotations

import contextvars
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..ir import Graph, IRError, format_graph, graph_stats, verify
from ..ir.errors import KilnError, PassError

_NOTES: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("kiln_pass_notes", default=None)


def note(message: str) -> None:
    """Add a line to the running pass's summary (a no-op outside the pass manager)."""
    notes = _NOTES.get()
    if notes is not None:
        notes.append(message)


@dataclass(frozen=True, slots=True)
class Pass:
    """One pipeline entry: a name, the function, and a one-line description."""

    name: str
    fn: Callable[[Graph], Graph]
    description: str


@dataclass(frozen=True, slots=True)
class PassRecord:
    """What one pass did: time, node counts before and after, and a summary of the change."""

    index: int
    name: str
    description: str
    seconds: float
    nodes_before: int
    nodes_after: int
    changed: bool
    summary: str


def diff_summary(before: Graph, after: Graph) -> str:
    """A structural diff in words: nodes removed/added by op, and values whose type changed."""
    if before is after:
        return "no change"
    b, a = Counter(n.op for n in before.nodes), Counter(n.op for n in after.nodes)
    removed, added = b - a, a - b
    parts = []
    if removed:
        parts.append("removed " + ", ".join(f"{k} x{v}" for k, v in sorted(removed.items())))
    if added:
        parts.append("added " + ", ".join(f"{k} x{v}" for k, v in sorted(added.items())))
    old = before.values
    retyped = sum(1 for name, v in after.values.items() if name in old and old[name].type != v.type)
    if retyped:
        parts.append(f"{retyped} value type(s) changed")
    dp = len(after.params) - len(before.params)
    if dp:
        parts.append(f"params {len(before.params)} -> {len(after.params)}")
    return "; ".join(parts) if parts else ("rewrote nodes in place" if before != after else "no change")


def _header(rec: PassRecord, g: Graph) -> str:
    s = graph_stats(g)
    lines = [
        f"kiln IR after {rec.index:02d} {rec.name}: {rec.description}",
        f"nodes: {rec.nodes_after} (before: {rec.nodes_before})   time: {rec.seconds * 1e3:.2f} ms",
        f"changed: {rec.summary}",
        f"MACs: {s.macs:,}   FLOPs: {s.flops:,}   activation bytes: {s.activation_bytes:,} (one buffer per value)",
    ]
    return "".join(f"# {line}\n" for line in lines)


class Dumper:
    """Writes NN-<pass>.ir after every pass and an index of them."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in self.dir.glob("[0-9][0-9]-*.ir"):
            old.unlink()
        self.rows: list[str] = []

    def write(self, rec: PassRecord, g: Graph) -> None:
        fname = f"{rec.index:02d}-{rec.name}.ir"
        (self.dir / fname).write_text(_header(rec, g) + format_graph(g))
        self.rows.append(f"| {rec.index:02d} | {rec.name} | {rec.seconds * 1e3:.2f} | {rec.nodes_after} "
                         f"| {rec.summary} | [{fname}]({fname}) |")

    def close(self) -> None:
        head = ["# kiln pass-by-pass IR", "", "| # | pass | ms | nodes | changed | file |",
                "|---|---|---|---|---|---|"]
        (self.dir / "index.md").write_text("\n".join(head + self.rows) + "\n")


def run_passes(g: Graph, pipeline: Sequence[Pass], dump_dir: str | Path | None = None,
               stage: str = "import") -> tuple[Graph, list[PassRecord]]:
    """Run `pipeline` on `g`; verify before the first pass and after each one."""
    dumper = Dumper(dump_dir) if dump_dir is not None else None
    try:
        verify(g)
    except IRError as e:
        raise PassError(f"the graph given to the pipeline is invalid:\n{e}") from e
    first = PassRecord(0, stage, "the graph as given", 0.0, len(g.nodes), len(g.nodes), False, "no change")
    records = [first]
    if dumper:
        dumper.write(first, g)
    for i, p in enumerate(pipeline, 1):
        notes: list[str] = []
        token = _NOTES.set(notes)
        t0 = time.perf_counter()
        try:
            out = p.fn(g)
            if not isinstance(out, Graph):
                raise PassError(f"pass {p.name!r} returned {type(out).__name__}, not a Graph")
            if out is not g:
                verify(out)
        except KilnError as e:
            ran = ", ".join(r.name for r in records[1:]) or "none"
            raise PassError(f"pass {p.name!r} failed (passes run before it: {ran}):\n{e}") from e
        finally:
            _NOTES.reset(token)
        dt = time.perf_counter() - t0
        summary = "; ".join(notes) if notes else diff_summary(g, out)
        rec = PassRecord(i, p.name, p.description, dt, len(g.nodes), len(out.nodes), out is not g, summary)
        records.append(rec)
        if dumper:
            dumper.write(rec, out)
        g = out
    if dumper:
        dumper.close()
    return g, records
