"""Tensor types: dtype, static shape and physical layout.

A layout string names how a tensor's elements lie in memory. The empty string is the plain
row-major order of the logical shape (what numpy and ONNX mean by NCHW for a 4-D tensor);
other layouts ("NHWC", "NCHW16c") are chosen by passes and never change the logical shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import IRError

# IR dtype name -> numpy dtype. The short names are what the text form prints.
DTYPES: dict[str, np.dtype] = {
    "f16": np.dtype(np.float16),
    "f32": np.dtype(np.float32),
    "f64": np.dtype(np.float64),
    "i8": np.dtype(np.int8),
    "u8": np.dtype(np.uint8),
    "i16": np.dtype(np.int16),
    "u16": np.dtype(np.uint16),
    "i32": np.dtype(np.int32),
    "u32": np.dtype(np.uint32),
    "i64": np.dtype(np.int64),
    "u64": np.dtype(np.uint64),
    "bool": np.dtype(np.bool_),
}
_BY_NUMPY = {v: k for k, v in DTYPES.items()}

FLOAT_DTYPES = frozenset({"f16", "f32", "f64"})
INT_DTYPES = frozenset({"i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64"})

# Layouts a value may carry. "" is plain row-major in logical order.
LAYOUTS = frozenset({"", "NHWC", "NCHW8c", "NCHW16c"})


def dtype_of(array_or_dtype) -> str:
    """The IR dtype name of a numpy array or dtype."""
    dt = np.dtype(getattr(array_or_dtype, "dtype", array_or_dtype))
    try:
        return _BY_NUMPY[dt]
    except KeyError:
        raise IRError(f"unsupported dtype {dt}; kiln supports {', '.join(DTYPES)}") from None


@dataclass(frozen=True, slots=True)
class TensorType:
    """dtype, static shape and layout of one value."""

    dtype: str
    shape: tuple[int, ...]
    layout: str = ""

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise IRError(f"unknown dtype {self.dtype!r}; known: {', '.join(DTYPES)}")
        shape = tuple(int(d) for d in self.shape)
        if any(d < 0 for d in shape):
            raise IRError(f"negative dimension in shape {list(shape)}")
        object.__setattr__(self, "shape", shape)
        if self.layout not in LAYOUTS:
            raise IRError(f"unknown layout {self.layout!r}; known: {sorted(LAYOUTS)}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def np_dtype(self) -> np.dtype:
        return DTYPES[self.dtype]

    @property
    def nbytes(self) -> int:
        return self.numel * self.np_dtype.itemsize

    def with_layout(self, layout: str) -> TensorType:
        return self if layout == self.layout else TensorType(self.dtype, self.shape, layout)

    def __str__(self) -> str:
        s = f"{self.dtype}[{','.join(map(str, self.shape))}]"
        return s + (f"{{{self.layout}}}" if self.layout else "")

    @staticmethod
    def of(array: np.ndarray) -> TensorType:
        return TensorType(dtype_of(array), tuple(array.shape))
