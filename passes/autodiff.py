"""autodiff: turn an inference graph into one training step (forward, loss, backward, update).

Rewrite, in four sweeps over a forward graph whose first output is the logits:
1. state: every trainable param (role "param", not frozen) and every buffer (role "buffer",
   the running statistics) becomes a graph input, so the step reads the current weights;
   frozen params stay consts. Optimizer slots (momentum, Adam moments) are inputs too.
2. training forms: batch_norm -> batch_norm_train (batch statistics; its running statistics
   come out as new state), dropout -> dropout_train (a mask drawn from (seed, step, index)).
3. loss and backward: a loss node on the logits and `labels` (and `mask`); then the nodes in
   reverse order, each op's gradient rule (OpDef.grad) adding the backward nodes. Gradients
   reaching one value from several users are summed.
4. update: one optimizer node per trainable param, reading its gradient and slots.
The result's inputs are [model inputs, labels, mask?, hyper, step?, state...] and its outputs
[loss, model outputs..., new state...] (TrainingGraph says which is which).
Preconditions: types inferred; every op on the path from a trainable param to the loss has a
gradient rule (else UnsupportedError naming the node).
Algebra: the chain rule; each rule's algebra is in its op's file, checked by finite differences.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..ir import Graph, Node, Param, TensorType, Value, get_op, infer_types, normalize_attrs
from ..ir.errors import UnsupportedError
from ..ir.graph import fresh_name
from ..ir.verify import node_label
from .manager import note

LOSSES = ("softmax_cross_entropy",)


@dataclass(frozen=True, slots=True)
class TrainingGraph:
    """The step graph and the names the trainer binds: `state` (input name -> initial array),
    `updates` (state input name -> the output carrying its next value)."""

    graph: Graph
    labels: str
    mask: str | None
    hyper: str
    step: str | None
    state: dict
    updates: dict
    trainable: tuple[str, ...]
    grads: dict  # trainable param -> the output carrying its gradient (with expose_grads)


class _Context:
    """What gradient rules see (see ir/grad.py): it appends nodes and mints names."""

    def __init__(self, types: dict[str, TensorType], consts: dict[str, np.ndarray], taken: set[str],
                 needs_grad: set[str], seed: str):
        self.types, self.consts, self.taken = types, consts, taken
        self.needs_grad, self.seed = needs_grad, seed
        self.nodes: list[Node] = []
        self.params: list[Param] = []
        self.current: Node | None = None

    def emit(self, op: str, inputs: Iterable[str], attrs=None, base: str | Sequence[str] = "g") -> list[str]:
        """Add one node; its outputs are named after `base` (one base per output if a list)."""
        inputs = list(inputs)
        attrs = normalize_attrs(op, attrs)
        outs = infer_types(op, [self.types[i] for i in inputs], attrs)
        bases = [base] * len(outs) if isinstance(base, str) else list(base)
        names = [fresh_name(b, self.taken) for b in bases]
        values = tuple(Value(n, t) for n, t in zip(names, outs, strict=True))
        where = self.current.name or self.current.outputs[0].name if self.current else ""
        self.nodes.append(Node(op, tuple(inputs), values, attrs, name=f"{where}.grad" if where else ""))
        self.types.update({v.name: v.type for v in values})
        return names

    def type(self, name: str) -> TensorType:
        return self.types[name]

    def const(self, array: np.ndarray, base: str) -> str:
        name = fresh_name(base, self.taken)
        p = Param(Value(name, TensorType.of(np.asarray(array))), np.asarray(array), "const")
        self.params.append(p)
        self.types[name] = p.value.type
        self.consts[name] = p.data
        return name

    def const_data(self, name: str) -> np.ndarray | None:
        return self.consts.get(name)

    def is_seed(self, name: str | None) -> bool:
        return name == self.seed

    def needs(self, node: Node, i: int) -> bool:
        return node.inputs[i] in self.needs_grad

    def unsupported(self, node: Node, why: str):
        raise UnsupportedError(f"autodiff: node {node_label(node)}: {why}")


def _training_forms(nodes, types, taken, step_name):
    """batch_norm -> batch_norm_train, dropout -> dropout_train; returns the new nodes and, per
    running-statistics input, the value carrying its update."""
    out, running = [], {}
    uses_step, dropouts = False, 0
    for n in nodes:
        if n.op == "batch_norm":
            x, _, _, mean, var = n.inputs
            c = TensorType(types[x].dtype, (types[x].shape[1],))
            extra = [Value(fresh_name(f"{n.outputs[0].name}.{s}", taken), c)
                     for s in ("mean", "invstd", "running_mean", "running_var")]
            out.append(Node("batch_norm_train", n.inputs, (n.outputs[0], *extra),
                            normalize_attrs("batch_norm_train", dict(n.attrs)), n.name))
            running[mean], running[var] = extra[2].name, extra[3].name
        elif n.op == "dropout" and n.attrs["ratio"] > 0:
            mask = Value(fresh_name(f"{n.outputs[0].name}.mask", taken), n.outputs[0].type)
            dropouts += 1  # unseeded dropouts get distinct seeds, so equal-sized ones differ
            attrs = {**n.attrs, "seed": n.attrs["seed"] or dropouts}
            out.append(Node("dropout_train", (n.inputs[0], step_name), (n.outputs[0], mask), attrs, n.name))
            uses_step = True
        else:
            out.append(n)
    return out, running, uses_step


def _reachable(nodes: list[Node], sources: set[str]) -> set[str]:
    """Values that depend on any of `sources` through float outputs."""
    live = set(sources)
    for n in nodes:
        if any(i in live for i in n.inputs):
            live.update(v.name for v in n.outputs if v.type.dtype.startswith("f"))
    return live


def _backward(ctx: _Context, nodes: list[Node], loss: str) -> dict[str, str]:
    grads: dict[str, str] = {loss: ctx.seed}
    for n in reversed(nodes):
        dys = [grads.get(v.name) for v in n.outputs]
        if all(d is None for d in dys) or not any(i in ctx.needs_grad for i in n.inputs):
            continue
        op = get_op(n.op)
        if op.grad is None:
            ctx.unsupported(n, f"op {n.op!r} has no gradient rule; ops with one: "
                            + ", ".join(sorted(k for k, o in _ops().items() if o.grad)))
        ctx.current = n
        dxs = op.grad(ctx, n, dys)
        for name, dx in zip(n.inputs, dxs, strict=True):
            if dx is None or name not in ctx.needs_grad:
                continue
            grads[name] = ctx.emit("add", [grads[name], dx], base="d" + name)[0] if name in grads else dx
    ctx.current = None
    return grads


def split_state(g: Graph, frozen: Iterable[str] = ()) -> tuple[list[Param], list[Param]]:
    """(trainable params, buffers): float params of role "param" not named in `frozen` (a name,
    or a prefix ending in '.': "layer1." freezes a whole block), and params of role "buffer"."""
    frozen = tuple(frozen)
    unknown = [f for f in frozen if not any(p.name == f or f.endswith(".") and p.name.startswith(f)
                                            for p in g.params)]
    if unknown:
        raise UnsupportedError(f"frozen names {unknown} match no param of {g.name!r}")

    def is_frozen(name: str) -> bool:
        return any(name == f or (f.endswith(".") and name.startswith(f)) for f in frozen)

    trainable = [p for p in g.params if p.role == "param" and p.value.type.dtype.startswith("f")
                 and not is_frozen(p.name)]
    return trainable, [p for p in g.params if p.role == "buffer"]


def _ops():
    from ..ir.registry import all_ops

    return all_ops()


def autodiff(g: Graph, optimizer, loss: str = "softmax_cross_entropy", frozen: Iterable[str] = (),
             masked: bool = False, label_dtype: str = "i64", expose_grads: bool = False) -> TrainingGraph:
    """The training step graph of `g` (see the module docstring). `optimizer` supplies `op`,
    `attrs`, `slots` (per-param state names) and `hyper_size`; `frozen` names params (or name
    prefixes ending in '.') that stay fixed; `masked` adds a bool `mask` input for the loss;
    `expose_grads` appends each trainable param's gradient to the outputs."""
    if loss not in LOSSES:
        raise UnsupportedError(f"unknown loss {loss!r}; losses: {', '.join(LOSSES)}")
    taken = set(g.values)
    trainable, buffers = split_state(g, frozen)
    state_params = {p.name for p in trainable + buffers}
    consts = [Param(p.value, p.data, "const") if p.role != "const" else p for p in g.params
              if p.name not in state_params]
    types = dict({v.name: v.type for v in g.inputs}, **{p.name: p.value.type for p in g.params})
    types.update({v.name: v.type for n in g.nodes for v in n.outputs})

    step_name = fresh_name("step", taken)
    nodes, running, uses_step = _training_forms(g.nodes, types, taken, step_name)
    types.update({v.name: v.type for n in nodes for v in n.outputs})

    logits = g.outputs[0]
    lt = types[logits]
    if lt.rank != 2:
        raise UnsupportedError(f"the loss reads the first output {logits!r} as [batch, classes] logits; it is {lt}")
    labels = Value(fresh_name("labels", taken), TensorType(label_dtype, (lt.shape[0],)))
    mask = Value(fresh_name("mask", taken), TensorType("bool", (lt.shape[0],))) if masked else None
    hyper = Value(fresh_name("hyper", taken), TensorType("f32", (optimizer.hyper_size,)))
    loss_v = Value(fresh_name("loss", taken), TensorType(lt.dtype, ()))
    types.update({labels.name: labels.type, hyper.name: hyper.type, loss_v.name: loss_v.type})
    if mask:
        types[mask.name] = mask.type
    loss_node = Node(loss, (logits, labels.name, *([mask.name] if mask else [])), (loss_v,), {}, "loss")
    nodes.append(loss_node)

    const_data = {p.name: p.data for p in consts}
    needs = _reachable(nodes, {p.name for p in trainable})
    seed_name = fresh_name("dloss", taken)
    ctx = _Context(types, const_data, taken, needs, seed_name)
    seed = ctx.const(np.ones((), lt.np_dtype), seed_name)
    ctx.seed = seed
    grads = _backward(ctx, nodes, loss_v.name)

    state: dict[str, np.ndarray] = {p.name: p.data.copy() for p in trainable + buffers}
    updates: dict[str, str] = {}
    state_inputs = [p.value for p in trainable + buffers]
    for p in trainable:
        slot_values = []
        for s in optimizer.slots:
            v = Value(fresh_name(f"{p.name}.{s}", taken), p.value.type)
            state[v.name] = np.zeros(p.value.type.shape, p.value.type.np_dtype)
            state_inputs.append(v)
            types[v.name] = v.type
            slot_values.append(v.name)
        if p.name not in grads:
            note(f"{p.name}: no gradient reaches it; it is left unchanged")
            continue
        ins = optimizer.update_inputs(p.name, grads[p.name], hyper.name, slot_values)
        ctx.current = None
        outs = ctx.emit(optimizer.op, ins, optimizer.attrs, base=[f"{v}.next" for v in (p.name, *slot_values)])
        updates[p.name] = outs[0]
        for slot, new in zip(slot_values, outs[1:], strict=True):
            updates[slot] = new
    for stat, new in running.items():
        if stat in state:
            updates[stat] = new

    step_in = [Value(step_name, TensorType("i64", (1,)))] if uses_step else []
    inputs = (*g.inputs, labels, *([mask] if mask else []), hyper, *step_in, *state_inputs)
    exposed = {p: grads[p] for p in (t.name for t in trainable) if expose_grads and p in grads}
    outputs = (loss_v.name, *g.outputs, *updates.values(), *exposed.values())
    graph = Graph(f"{g.name}.train", inputs, (*nodes, *ctx.nodes), outputs, (*consts, *ctx.params))
    note(f"{len(trainable)} trainable param(s), {len(buffers)} buffer(s), {len(ctx.nodes)} backward and "
         f"update node(s); optimizer {optimizer.op}; loss {loss}")
    return TrainingGraph(graph, labels.name, mask.name if mask else None, hyper.name,
                         step_name if uses_step else None, state, updates, tuple(p.name for p in trainable),
                         exposed)


def vjp(g: Graph, wrt: Sequence[str]) -> Graph:
    """The vector-Jacobian product of `g`'s first output: a graph with one more input, `dy` (the
    cotangent, typed like the output; none when the output is a scalar loss, whose gradient is
    one), whose outputs are the gradients of sum(output * dy) with respect to the values `wrt`
    (graph inputs or params). Gradient rules are tested through this against finite differences."""
    taken = set(g.values)
    types = {name: v.type for name, v in g.values.items()}
    out_t = types[g.outputs[0]]
    consts = {p.name: p.data for p in g.params}
    ctx = _Context(types, consts, taken, _reachable(list(g.nodes), set(wrt)), "")
    if out_t.rank == 0:
        ctx.seed = ctx.const(np.ones((), out_t.np_dtype), "dloss")
        extra = ()
    else:
        extra = (Value(fresh_name("dy", taken), out_t),)
        ctx.seed = extra[0].name
        types[ctx.seed] = out_t
    ctx.needs_grad |= set(wrt)
    grads = _backward(ctx, list(g.nodes), g.outputs[0])
    missing = [w for w in wrt if w not in grads]
    if missing:
        raise UnsupportedError(f"no gradient reaches {missing} from {g.outputs[0]!r}")
    return Graph(f"{g.name}.vjp", (*g.inputs, *extra), (*g.nodes, *ctx.nodes), tuple(grads[w] for w in wrt),
                 (*g.params, *ctx.params))


def stateful_forward(g: Graph, frozen: Iterable[str] = ()) -> Graph:
    """The inference graph with the trainable params and buffers as inputs (named like the
    params), so an evaluation reads the trainer's current state without recompiling."""
    trainable, buffers = split_state(g, frozen)
    state = trainable + buffers
    names = {p.name for p in state}
    return g.replace(inputs=(*g.inputs, *(p.value for p in state)),
                     params=tuple(p for p in g.params if p.name not in names))
