"""kiln as an ONNX backend (`onnx.backend.base.Backend`), so ONNX's own backend-test machinery
can drive it:

    from kiln.onnx_backend import KilnBackend
    rep = KilnBackend.prepare(model)          # import + compile
    outputs = rep.run([x])                    # inputs in graph-input order, or a dict

kiln compiles static shapes, so inputs that must be known at compile time (a Reshape's shape
given as a graph input, say) are bound from the first run's values, and the model is compiled
then; later runs must pass the same values for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper
from onnx.backend.base import Backend, BackendRep, Device, DeviceType, namedtupledict

from .api import compile
from .frontend.onnx import from_onnx
from .ir.errors import InputError, UnsupportedError

TARGET_FOR_DEVICE = {DeviceType.CPU: "reference"}  # CUDA joins with the CUDA backend
DEVICE_NAMES = {DeviceType.CPU: "CPU", DeviceType.CUDA: "CUDA"}


class KilnBackendRep(BackendRep):
    """A prepared model. Compiles at once, or at the first run when it needs input values."""

    def __init__(self, model: onnx.ModelProto, target: str):
        self.model, self.target = model, target
        inits = {t.name for t in model.graph.initializer}
        self.input_names = [v.name for v in model.graph.input if v.name not in inits]
        self.output_names = [v.name for v in model.graph.output]
        self.bound: dict[str, np.ndarray] = {}
        self.exe = None
        try:
            self.exe = compile(from_onnx(model), target=target)
        except UnsupportedError as e:
            if not getattr(e, "needs_constants", None):
                raise

    def _bind(self, feeds: Mapping[str, np.ndarray]) -> None:
        for _ in range(len(self.input_names) + 1):
            try:
                self.exe = compile(from_onnx(self.model, constants=self.bound), target=self.target)
                return
            except UnsupportedError as e:
                need = [n for n in getattr(e, "needs_constants", []) if n not in self.bound]
                if not need:
                    raise
                self.bound.update({n: np.asarray(feeds[n]) for n in need})

    def run(self, inputs, **kwargs) -> tuple:
        if isinstance(inputs, Mapping):
            feeds = dict(inputs)
        else:
            arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            if len(arrays) != len(self.input_names):
                raise InputError(f"expected {len(self.input_names)} input(s) {self.input_names}, given {len(arrays)}")
            feeds = dict(zip(self.input_names, arrays, strict=True))
        if self.exe is None:
            self._bind(feeds)
        for name, value in self.bound.items():
            if not np.array_equal(np.asarray(feeds.get(name)), value):
                raise InputError(f"input {name!r} was compiled in as a constant; it must stay {value.tolist()}")
        outs = self.exe.run({n: np.asarray(feeds[n]) for n in self.exe.input_names})
        return namedtupledict("Outputs", self.output_names)(*outs)


class KilnBackend(Backend):
    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs) -> bool:
        return cls.supports_device(device)

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs) -> KilnBackendRep:
        if not cls.supports_device(device):
            raise UnsupportedError(f"device {device!r}: kiln's ONNX backend runs on "
                                   f"{', '.join(DEVICE_NAMES[d] for d in TARGET_FOR_DEVICE)}")
        return KilnBackendRep(model, TARGET_FOR_DEVICE[Device(device).type])

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs, device: str = "CPU", **kwargs) -> tuple:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Sequence[np.ndarray], device: str = "CPU",
                 outputs_info=None, **kwargs) -> tuple:
        """Run one node: inputs typed from the arrays, outputs inferred."""
        arrays = [np.asarray(a) for a in inputs]
        names = [n for n in node.input if n]
        graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                        for n, a in zip(names, arrays, strict=True)]
        graph_outputs = [helper.make_empty_tensor_value_info(o) for o in node.output if o]
        opset = kwargs.get("opset_version", onnx.defs.onnx_opset_version())
        model = helper.make_model(helper.make_graph([node], "node", graph_inputs, graph_outputs),
                                  opset_imports=[helper.make_opsetid("", opset)])
        return cls.run_model(model, arrays, device)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        try:
            return Device(device).type in TARGET_FOR_DEVICE
        except Exception:  # noqa: BLE001 - onnx raises on an unknown device string
            return False


prepare = KilnBackend.prepare
run_model = KilnBackend.run_model
run_node = KilnBackend.run_node
supports_device = KilnBackend.supports_device
