"""The IR's text form: one line per node, stable, diffable, and parsed back by `parse`.

    graph lenet5(%input:f32[1,1,28,28]) {
      %conv1:f32[1,6,28,28] = conv2d[stride=1 pads=2 groups=1] (%input, %conv1.w:f32[6,1,5,5] param, %conv1.b:f32[6] param)  # conv1
      ...
      return %logits
    }

Grammar (one statement a line):
    graph    := 'graph' NAME '(' [value (',' value)*] ')' '{' stmt* '}'
    stmt     := outs '=' OP ['[' attr* ']'] '(' [operand (',' operand)*] ')' [buffer (',' buffer)*] ['#' node-name]
              | 'param' value ROLE ['=' list]          (a param no node reads)
              | 'return' %name (',' %name)*
    value    := %name ':' type         type := DTYPE '[' dims ']' ['{' LAYOUT '}']
    operand  := %name | %name ':' type ROLE ['=' list]   (a param, declared where first read)
    attr     := key '=' (number | word | "string" | '[' items ']' | true | false)
    buffer   := '@' ARENA '+' offset '(' nbytes 'B' ')'
Names that are not [A-Za-z0-9_.-/]+ are written as JSON strings after the %. Params print their
type and role where they are read; small consts (<= 8 elements) carry their data inline. Other
param data is not text: `parse(text, params=...)` takes it, or `seed=` fills it randomly.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping

import numpy as np

from .errors import ParseError
from .graph import BufferSlot, Graph, Node, Param, Value
from .registry import all_ops, get_op, normalize_attrs
from .types import TensorType

_NAME = re.compile(r"[A-Za-z0-9_.\-/]+\Z")
INLINE_CONST_MAX = 8


def _name(n: str) -> str:
    return n if _NAME.match(n) else json.dumps(n)


def _num(x) -> str:
    if isinstance(x, float):
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return repr(x)
    return str(x)


def format_attr(value, length: int | None) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        if length and value and all(v == value[0] for v in value):
            return _num(value[0])
        return "[" + ",".join(_num(v) for v in value) + "]"
    if isinstance(value, str):
        return value if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) else json.dumps(value)
    return _num(value)


def format_attrs(node: Node) -> str:
    op = all_ops().get(node.op)  # an unknown op still prints (the verifier reports it)
    parts = []
    for k, v in node.attrs.items():
        spec = op.attrs.get(k) if op else None
        if spec is not None and k not in op.show and v == spec.default:
            continue
        parts.append(f"{k}={format_attr(v, spec.length if spec else None)}")
    return f"[{' '.join(parts)}]" if parts else ""


def _format_param(p: Param) -> str:
    s = f"%{_name(p.name)}:{p.value.type} {p.role}"
    if p.role == "const" and p.data.size <= INLINE_CONST_MAX:
        s += "=[" + ",".join(_num(v) for v in p.data.ravel().tolist()) + "]"
    return s


def format_node(node: Node, params: Mapping[str, Param]) -> str:
    outs = ", ".join(f"%{_name(v.name)}:{v.type}" for v in node.outputs)
    ins = ", ".join(_format_param(params[i]) if i in params else f"%{_name(i)}" for i in node.inputs)
    line = f"{outs} = {node.op}{format_attrs(node)} ({ins})"
    bufs = [v.buffer for v in node.outputs]
    if any(b is not None for b in bufs):
        line += "  " + ", ".join(str(b) if b else "@none" for b in bufs)
    if node.name:
        line += f"  # {node.name}"
    return line


def format_graph(g: Graph) -> str:
    params = g.param_map
    ins = ", ".join(f"%{_name(v.name)}:{v.type}" for v in g.inputs)
    lines = [f"graph {_name(g.name)}({ins}) {{"]
    used = {i for n in g.nodes for i in n.inputs}
    for p in g.params:
        if p.name not in used:
            lines.append(f"  param {_format_param(p)}")
    lines += [f"  {format_node(n, params)}" for n in g.nodes]
    lines.append("  return " + ", ".join(f"%{_name(o)}" for o in g.outputs))
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- parsing -----------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<comment>\#.*)
    | (?P<value>%(?:"(?:[^"\\]|\\.)*"|[A-Za-z0-9_.\-/]+))
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<number>-?(?:(?:inf|nan)(?![A-Za-z0-9_])|\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>[=,()\[\]{}:+@])
    )""",
    re.VERBOSE,
)


class _Line:
    def __init__(self, text: str, lineno: int):
        self.text, self.lineno, self.toks, pos = text, lineno, [], 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                self.fail(f"unexpected character {text[pos:].lstrip()[:1]!r}", pos)
            kind = m.lastgroup
            self.toks.append((kind, m.group(kind), m.start(kind)))
            pos = m.end()
        self.i = 0

    def fail(self, msg: str, col: int | None = None):
        if col is None:
            col = self.toks[self.i][2] if self.i < len(self.toks) else len(self.text)
        raise ParseError(f"line {self.lineno}, column {col + 1}: {msg}\n  {self.text}\n  {' ' * col}^")

    def peek(self, kind: str | None = None, text: str | None = None) -> bool:
        if self.i >= len(self.toks):
            return False
        k, t, _ = self.toks[self.i]
        return (kind is None or k == kind) and (text is None or t == text)

    def take(self, kind: str | None = None, text: str | None = None) -> str:
        if not self.peek(kind, text):
            got = repr(self.toks[self.i][1]) if self.i < len(self.toks) else "end of line"
            self.fail(f"expected {text or kind}, got {got}")
        self.i += 1
        return self.toks[self.i - 1][1]

    def done(self) -> bool:
        return self.i >= len(self.toks)

    def name(self) -> str:
        raw = self.take("value")[1:]
        return json.loads(raw) if raw.startswith('"') else raw

    def type(self) -> TensorType:
        dtype = self.take("word")
        self.take("punct", "[")
        dims = []
        while not self.peek("punct", "]"):
            dims.append(int(self.take("number")))
            if not self.peek("punct", "]"):
                self.take("punct", ",")
        self.take("punct", "]")
        layout = ""
        if self.peek("punct", "{"):
            self.take("punct", "{")
            layout = self.take("word")
            self.take("punct", "}")
        try:
            return TensorType(dtype, tuple(dims), layout)
        except Exception as e:  # noqa: BLE001 - reported with the position
            self.fail(str(e))

    def scalar(self):
        if self.peek("number"):
            t = self.take("number")
            return float(t) if any(c in t for c in ".eEn") else int(t)
        if self.peek("string"):
            return json.loads(self.take("string"))
        w = self.take("word")
        return {"true": True, "false": False}.get(w, w)

    def attr_value(self):
        if not self.peek("punct", "["):
            return self.scalar()
        self.take("punct", "[")
        items = []
        while not self.peek("punct", "]"):
            items.append(self.scalar())
            if not self.peek("punct", "]"):
                self.take("punct", ",")
        self.take("punct", "]")
        return items


class _Parser:
    def __init__(self, params: Mapping[str, np.ndarray] | None, seed: int | None):
        self.given = dict(params or {})
        self.rng = np.random.default_rng(seed) if seed is not None else None
        self.params: dict[str, Param] = {}

    def declare(self, ln: _Line, name: str) -> None:
        t = ln.type()
        role = ln.take("word")
        inline = None
        if ln.peek("punct", "="):
            ln.take("punct", "=")
            inline = ln.attr_value()
        if name in self.params:
            if self.params[name].value.type != t or self.params[name].role != role:
                ln.fail(f"param %{name} redeclared with a different type or role")
            return
        if inline is not None:
            data = np.array(inline, dtype=t.np_dtype).reshape(t.shape)
        elif name in self.given:
            data = np.asarray(self.given[name])
        elif self.rng is not None:
            data = self.rng.standard_normal(t.shape).astype(t.np_dtype)
        else:
            ln.fail(f"no data for param %{name}: pass params={{...}} or seed= to parse()")
        try:
            self.params[name] = Param(Value(name, t), data, role)
        except Exception as e:  # noqa: BLE001
            ln.fail(str(e))

    def node(self, ln: _Line) -> Node:
        outs = []
        while True:
            name = ln.name()
            ln.take("punct", ":")
            outs.append((name, ln.type()))
            if not ln.peek("punct", ","):
                break
            ln.take("punct", ",")
        ln.take("punct", "=")
        op = ln.take("word")
        try:
            get_op(op)
        except Exception as e:  # noqa: BLE001
            ln.fail(str(e))
        raw = {}
        if ln.peek("punct", "["):
            ln.take("punct", "[")
            while not ln.peek("punct", "]"):
                key = ln.take("word")
                ln.take("punct", "=")
                raw[key] = ln.attr_value()
            ln.take("punct", "]")
        ln.take("punct", "(")
        ins = []
        while not ln.peek("punct", ")"):
            name = ln.name()
            if ln.peek("punct", ":"):
                ln.take("punct", ":")
                self.declare(ln, name)
            ins.append(name)
            if not ln.peek("punct", ")"):
                ln.take("punct", ",")
        ln.take("punct", ")")
        bufs = []
        while ln.peek("punct", "@"):
            ln.take("punct", "@")
            arena = ln.take("word")
            if arena == "none":
                bufs.append(None)
            else:
                ln.take("punct", "+")
                off = int(ln.take("number"))
                ln.take("punct", "(")
                nbytes = int(ln.take("number"))
                ln.take("word", "B")
                ln.take("punct", ")")
                bufs.append(BufferSlot(off, nbytes, arena))
            if ln.peek("punct", ","):
                ln.take("punct", ",")
        bufs += [None] * (len(outs) - len(bufs))
        comment = ln.take("comment")[1:].strip() if ln.peek("comment") else ""
        if not ln.done():
            ln.fail("unexpected text after the node")
        try:
            attrs = normalize_attrs(op, raw)
        except Exception as e:  # noqa: BLE001
            ln.fail(str(e))
        values = tuple(Value(n, t, b) for (n, t), b in zip(outs, bufs, strict=True))
        return Node(op, tuple(ins), values, attrs, comment)


def parse(text: str, params: Mapping[str, np.ndarray] | None = None, seed: int | None = None) -> Graph:
    """Read a graph back from its text form (see the module docstring for the grammar)."""
    p = _Parser(params, seed)
    lines = [(i + 1, s) for i, s in enumerate(text.splitlines()) if s.strip() and not s.strip().startswith("#")]
    if not lines:
        raise ParseError("empty text: expected 'graph NAME(...) {'")
    lineno, head = lines[0]
    ln = _Line(head, lineno)
    ln.take("word", "graph")
    gname = json.loads(ln.take("string")) if ln.peek("string") else ln.take("word")
    ln.take("punct", "(")
    inputs = []
    while not ln.peek("punct", ")"):
        name = ln.name()
        ln.take("punct", ":")
        inputs.append(Value(name, ln.type()))
        if not ln.peek("punct", ")"):
            ln.take("punct", ",")
    ln.take("punct", ")")
    ln.take("punct", "{")
    nodes, outputs, closed = [], None, False
    for lineno, s in lines[1:]:
        ln = _Line(s, lineno)
        if closed:
            ln.fail("text after the closing '}'")
        if ln.peek("punct", "}"):
            closed = True
        elif ln.peek("word", "return"):
            ln.take("word")
            outputs = [ln.name()]
            while ln.peek("punct", ","):
                ln.take("punct", ",")
                outputs.append(ln.name())
        elif ln.peek("word", "param"):
            ln.take("word")
            p.declare(ln, _take_param_name(ln))
        else:
            nodes.append(p.node(ln))
    if not closed or outputs is None:
        raise ParseError(f"graph {gname!r}: missing {'return' if outputs is None else 'closing }'}")
    return Graph(gname, tuple(inputs), tuple(nodes), tuple(outputs), tuple(p.params.values()))


def _take_param_name(ln: _Line) -> str:
    name = ln.name()
    ln.take("punct", ":")
    return name
