"""What `kiln.compile(..., mode="train")` returns: a compiled training step and its state.

The step graph (built by passes/autodiff.py) reads the weights, running statistics and optimizer
slots as inputs and returns their next values; the trainer keeps that state between steps, feeds
the learning rate of the step (so schedules need no recompiling) and swaps in the new state.
Evaluation runs a second compiled graph: the model's inference form, reading the same state.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..ir import Graph, Param, get_op
from ..ir.errors import InputError


class Trainer:
    def __init__(self, spec, step_exe, eval_exe, optimizer, forward: Graph):
        self.spec = spec  # passes.autodiff.TrainingGraph
        self.optimizer = optimizer
        self.forward = forward
        self._step_exe, self._eval_exe = step_exe, eval_exe
        self.state = {k: np.array(v, copy=True) for k, v in spec.state.items()}
        self.steps = 0
        self.last_outputs: list[np.ndarray] = []

    # -- feeding -----------------------------------------------------------------------------
    def _model_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not isinstance(feeds, Mapping):
            raise InputError(f"feeds must be a dict of input name -> array, got {type(feeds).__name__}")
        names = [v.name for v in self.forward.inputs]
        return {k: feeds[k] for k in names if k in feeds}

    def _labels(self, feeds, need_mask: bool) -> dict[str, np.ndarray]:
        if "labels" not in feeds:
            raise InputError("training feeds need 'labels' (integer class per row of the first output)")
        out = {self.spec.labels: np.asarray(feeds["labels"]).astype(np.int64, copy=False)}
        if need_mask:
            if "mask" not in feeds:
                raise InputError("this trainer was compiled with a mask: feeds need a boolean 'mask' of the rows "
                                 "the loss counts")
            out[self.spec.mask] = np.asarray(feeds["mask"], dtype=bool)
        elif "mask" in feeds:
            raise InputError("feeds give a 'mask' but the trainer was compiled without one (compile with masked=True)")
        return out

    # -- training ----------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        return self.optimizer.lr_at(self.steps)

    def step(self, feeds: Mapping[str, np.ndarray]) -> float:
        """One forward, backward and update on a batch; returns the batch's loss (before the update)."""
        run = {**self._model_feeds(feeds), **self._labels(feeds, self.spec.mask is not None),
               self.spec.hyper: self.optimizer.hyper(self.steps), **self.state}
        if self.spec.step is not None:
            run[self.spec.step] = np.array([self.steps], np.int64)
        outs = self._step_exe.run(run)
        n_model = len(self.forward.outputs)
        for name, new in zip(self.spec.updates, outs[1 + n_model: 1 + n_model + len(self.spec.updates)], strict=True):
            self.state[name] = new
        self.last_outputs = outs[1:1 + n_model]
        self.steps += 1
        return float(outs[0])

    # -- evaluation --------------------------------------------------------------------------
    def predict(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The model's outputs in inference form (running statistics, no dropout)."""
        state = {v.name: self.state[v.name] for v in self._eval_exe.graph.inputs if v.name in self.state}
        return self._eval_exe.run({**self._model_feeds(feeds), **state})

    def evaluate(self, feeds: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Loss and accuracy of the inference form on labelled data (rows kept by 'mask' if given)."""
        logits = self.predict(feeds)[0]
        labels = np.asarray(feeds["labels"]).astype(np.int64, copy=False)
        mask = np.asarray(feeds["mask"], bool) if "mask" in feeds else np.ones(len(labels), bool)
        loss = get_op("softmax_cross_entropy").reference([logits, labels, mask], {})[0]
        hits = (logits.argmax(axis=1) == labels)[mask]
        return {"loss": float(loss), "accuracy": float(hits.mean()) if hits.size else float("nan")}

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every weight, running statistic and optimizer slot, plus the step count."""
        return {**{k: v.copy() for k, v in self.state.items()}, "__step__": np.array(self.steps)}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        missing = sorted(set(self.state) - set(state))
        unknown = sorted(set(state) - set(self.state) - {"__step__"})
        if missing or unknown:
            raise InputError(f"state dict does not match: missing {missing}, unknown {unknown}")
        for k, v in state.items():
            if k == "__step__":
                continue
            v = np.asarray(v)
            if v.shape != self.state[k].shape or v.dtype != self.state[k].dtype:
                raise InputError(f"state {k!r}: expected {self.state[k].dtype}{list(self.state[k].shape)}, "
                                 f"given {v.dtype}{list(v.shape)}")
        self.state = {k: np.array(state[k], copy=True) for k in self.state}
        self.steps = int(state.get("__step__", 0))

    def inference_graph(self) -> Graph:
        """The model with the trained weights and running statistics as its params."""
        params = tuple(Param(p.value, self.state[p.name], p.role) if p.name in self.state else p
                       for p in self.forward.params)
        return self.forward.replace(params=params)

    def __repr__(self) -> str:
        return (f"Trainer({self.forward.name!r}, target={self._step_exe.target!r}, {self.optimizer.op}, "
                f"{len(self.spec.trainable)} trainable params, step {self.steps})")
