"""What `kiln.compile(..., mode="train")` returns: a compiled training step and its state.

The step graph (built by passes/autodiff.py) reads the weights, running statistics and optimizer
slots as inputs and returns their next values; the trainer keeps that state between steps, feeds
the learning rate of the step (so schedules need no recompiling) and swaps in the new state.
Evaluation runs a second compiled graph: the model's inference form, reading the same state.

On the cuda target the state stays on the device: two sets of device arrays, the step reading
one and writing the next values straight into the other (Executable.run's `into`), then the two
swap; per step only the batch, the labels and the hyper-parameters go over, and the loss and
the model's outputs come back. `state` and `state_dict()` copy it to the host when asked.

Threads: a step reads the state and replaces it, so one trainer takes one step at a time; a
second thread calling `step` (or `load_state_dict`) while a step is running gets a
ConcurrencyError rather than a silently interleaved update. `predict`, `evaluate` and
`state_dict` wait for a running step to finish and then read a consistent state.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping

import numpy as np

from ..ir import Graph, Param, get_op
from ..ir.errors import ConcurrencyError, InputError


class Trainer:
    def __init__(self, spec, step_exe, eval_exe, optimizer, forward: Graph):
        self.spec = spec  # passes.autodiff.TrainingGraph
        self.optimizer = optimizer
        self.forward = forward
        self._step_exe, self._eval_exe = step_exe, eval_exe
        self._on_device = step_exe.target == "cuda"
        self._state = {k: self._put(v) for k, v in spec.state.items()}
        # the device set the next step writes its updates into (cuda only)
        self._spare = {k: self._put(spec.state[k]) for k in spec.updates} if self._on_device else {}
        self.steps = 0
        self.last_outputs: list[np.ndarray] = []
        self._lock = threading.Lock()  # held for a step and a state load; readers wait on it

    @contextlib.contextmanager
    def _exclusive(self, what: str):
        """Hold the trainer's lock for a step or a state load; a second thread gets an error."""
        if not self._lock.acquire(blocking=False):
            raise ConcurrencyError(f"Trainer.{what} was called while another thread is inside a step or a state "
                                   "load of this trainer; a trainer takes one step at a time (use one trainer "
                                   "per thread, or a lock around step)")
        try:
            yield
        finally:
            self._lock.release()

    def _put(self, value: np.ndarray):
        """A private copy of a state array: on the device for the cuda target."""
        value = np.array(value, copy=True)
        if not self._on_device:
            return value
        from numba import cuda

        return cuda.to_device(value)

    @property
    def state(self) -> dict[str, np.ndarray]:
        """Every weight, running statistic and optimizer slot by name (host arrays: on the cuda
        target, copies of the device state)."""
        if not self._on_device:
            return self._state
        return {k: v.copy_to_host() for k, v in self._state.items()}

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
        with self._exclusive("step"):
            return self._step(feeds)

    def _step(self, feeds: Mapping[str, np.ndarray]) -> float:
        run = {**self._model_feeds(feeds), **self._labels(feeds, self.spec.mask is not None),
               self.spec.hyper: self.optimizer.hyper(self.steps), **self._state}
        if self.spec.step is not None:
            run[self.spec.step] = np.array([self.steps], np.int64)
        n_model = len(self.forward.outputs)
        if self._on_device:
            update_outputs = self._step_exe.output_names[1 + n_model: 1 + n_model + len(self.spec.updates)]
            into = {o: self._spare[k] for o, k in zip(update_outputs, self.spec.updates, strict=True)}
            outs = self._step_exe.run(run, into=into)
        else:
            outs = self._step_exe.run(run)
        for name, new in zip(self.spec.updates, outs[1 + n_model: 1 + n_model + len(self.spec.updates)], strict=True):
            if self._on_device:
                self._spare[name] = self._state[name]
            self._state[name] = new
        self.last_outputs = outs[1:1 + n_model]
        self.steps += 1
        return float(outs[0])

    # -- evaluation --------------------------------------------------------------------------
    def predict(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The model's outputs in inference form (running statistics, no dropout)."""
        with self._lock:
            state = {v.name: self._state[v.name] for v in self._eval_exe.graph.inputs if v.name in self._state}
            if self._on_device:  # the next step writes into these device arrays: run before it starts
                return self._eval_exe.run({**self._model_feeds(feeds), **state})
        return self._eval_exe.run({**self._model_feeds(feeds), **state})  # host state is replaced, never written

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
        with self._lock:
            host = self.state
            return {**{k: (v.copy() if host is self._state else v) for k, v in host.items()},
                    "__step__": np.array(self.steps)}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        with self._exclusive("load_state_dict"):
            self._load_state_dict(state)

    def _load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        missing = sorted(set(self._state) - set(state))
        unknown = sorted(set(state) - set(self._state) - {"__step__"})
        if missing or unknown:
            raise InputError(f"state dict does not match: missing {missing}, unknown {unknown}")
        for k, v in state.items():
            if k == "__step__":
                continue
            v = np.asarray(v)
            want = self._state[k]
            if tuple(v.shape) != tuple(want.shape) or v.dtype != np.dtype(want.dtype):
                raise InputError(f"state {k!r}: expected {np.dtype(want.dtype)}{list(want.shape)}, "
                                 f"given {v.dtype}{list(v.shape)}")
        self._state = {k: self._put(state[k]) for k in self._state}
        self.steps = int(state.get("__step__", 0))

    def inference_graph(self) -> Graph:
        """The model with the trained weights and running statistics as its params."""
        state = self.state
        params = tuple(Param(p.value, state[p.name], p.role) if p.name in state else p
                       for p in self.forward.params)
        return self.forward.replace(params=params)

    def __repr__(self) -> str:
        return (f"Trainer({self.forward.name!r}, target={self._step_exe.target!r}, {self.optimizer.op}, "
                f"{len(self.spec.trainable)} trainable params, step {self.steps})")
