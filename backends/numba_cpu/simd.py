"""A 16-lane float32 vector value for numba kernels, made with `numba.extending`.

numba keeps arrays in memory and LLVM will not promote a numba array tile to registers, so a
micro-kernel's accumulators are values of this type instead: each lives in one SIMD register
(`<16 x float>`, an AVX-512 register, or two AVX2 ones). The intrinsics lower straight to LLVM:

    vload(a, i)        a[i:i+16] as a vector (unaligned load; `a` a 1-D float32 array)
    vstore(a, i, v)    a[i:i+16] = v
    vsplat(x)          x in all 16 lanes
    vbroadcast(a, i)   a[i] in all 16 lanes: one broadcast load (no negative-index wraparound,
                       which numba's a[i] computes for every load)
    vzero()            0.0 in all lanes
    vfma(a, b, c)      a * b + c, fused (llvm.fma.v16f32)
    vadd, vsub, vmul         lane-wise
    vmax, vmin         lane-wise, NaN-propagating: a lane where either side is NaN gives NaN
                       (as numpy's maximum and onnxruntime's Relu, Clip and MaxPool do;
                       llvm.maxnum would drop the NaN)
    vsum(v)            the sum of the lanes
    vlane(v, i)        lane i of v (a scalar)
    vsigmoid(v)        1 / (1 + exp(-v)) lane-wise (llvm.exp; exp(-v) = inf gives 0, not NaN)

Indices are not bounds-checked: the generated kernels compute them from static shapes.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

LANES = 16
_F32 = ir.FloatType()
_VEC = ir.VectorType(_F32, LANES)


class F32x16(types.Type):
    def __init__(self) -> None:
        super().__init__(name="f32x16")


f32x16 = F32x16()


@register_model(F32x16)
class _F32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VEC)


def _scalar_ptr(context, builder, arr_type, arr, index):
    return builder.gep(context.make_array(arr_type)(context, builder, arr).data, [index])


def _element_ptr(context, builder, arr_type, arr, index):
    return builder.bitcast(_scalar_ptr(context, builder, arr_type, arr, index), _VEC.as_pointer())


def _splat(builder, val):
    one = builder.insert_element(ir.Constant(_VEC, ir.Undefined), val, ir.Constant(ir.IntType(32), 0))
    mask = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
    return builder.shuffle_vector(one, ir.Constant(_VEC, ir.Undefined), mask)


def _check_array(arr) -> None:
    if not (isinstance(arr, types.Array) and arr.dtype == types.float32 and arr.ndim == 1):
        raise TypeError(f"expected a 1-D float32 array, got {arr}")


@intrinsic
def vload(typingctx, arr, index):
    _check_array(arr)

    def codegen(context, builder, sig, args):
        idx = context.cast(builder, args[1], sig.args[1], types.intp)
        return builder.load(_element_ptr(context, builder, sig.args[0], args[0], idx), align=4)

    return f32x16(arr, index), codegen


@intrinsic
def vstore(typingctx, arr, index, vec):
    _check_array(arr)

    def codegen(context, builder, sig, args):
        idx = context.cast(builder, args[1], sig.args[1], types.intp)
        builder.store(args[2], _element_ptr(context, builder, sig.args[0], args[0], idx), align=4)
        return context.get_dummy_value()

    return types.none(arr, index, f32x16), codegen


@intrinsic
def vsplat(typingctx, x):
    def codegen(context, builder, sig, args):
        return _splat(builder, context.cast(builder, args[0], sig.args[0], types.float32))

    return f32x16(x), codegen


@intrinsic
def vbroadcast(typingctx, arr, index):
    _check_array(arr)

    def codegen(context, builder, sig, args):
        idx = context.cast(builder, args[1], sig.args[1], types.intp)
        return _splat(builder, builder.load(_scalar_ptr(context, builder, sig.args[0], args[0], idx), align=4))

    return f32x16(arr, index), codegen


@intrinsic
def vzero(typingctx):
    def codegen(context, builder, sig, args):
        return ir.Constant(_VEC, [0.0] * LANES)

    return f32x16(), codegen


def _call(builder, name: str, args):
    fnty = ir.FunctionType(_VEC, [_VEC] * len(args))
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    return builder.call(fn, args)


@intrinsic
def vfma(typingctx, a, b, c):
    def codegen(context, builder, sig, args):
        return _call(builder, "llvm.fma.v16f32", args)

    return f32x16(f32x16, f32x16, f32x16), codegen


@intrinsic
def vadd(typingctx, a, b):
    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])

    return f32x16(f32x16, f32x16), codegen


@intrinsic
def vsub(typingctx, a, b):
    def codegen(context, builder, sig, args):
        return builder.fsub(args[0], args[1])

    return f32x16(f32x16, f32x16), codegen


@intrinsic
def vmul(typingctx, a, b):
    def codegen(context, builder, sig, args):
        return builder.fmul(args[0], args[1])

    return f32x16(f32x16, f32x16), codegen


def _nan_select(builder, op: str, a, b):
    """a `op` b ? a : b, lane-wise, and a + b (NaN) in lanes where either side is NaN."""
    picked = builder.select(builder.fcmp_ordered(op, a, b), a, b)
    return builder.select(builder.fcmp_unordered("uno", a, b), builder.fadd(a, b), picked)


@intrinsic
def vmax(typingctx, a, b):
    def codegen(context, builder, sig, args):
        return _nan_select(builder, ">", args[0], args[1])

    return f32x16(f32x16, f32x16), codegen


@intrinsic
def vmin(typingctx, a, b):
    def codegen(context, builder, sig, args):
        return _nan_select(builder, "<", args[0], args[1])

    return f32x16(f32x16, f32x16), codegen


@intrinsic
def vsum(typingctx, v):
    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(_F32, [_F32, _VEC])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.vector.reduce.fadd.v16f32")
        return builder.call(fn, [ir.Constant(_F32, 0.0), args[0]])

    return types.float32(f32x16), codegen


@intrinsic
def vsigmoid(typingctx, v):
    def codegen(context, builder, sig, args):
        one = ir.Constant(_VEC, [1.0] * LANES)
        e = _call(builder, "llvm.exp.v16f32", [builder.fneg(args[0])])
        return builder.fdiv(one, builder.fadd(one, e))

    return f32x16(f32x16), codegen


@intrinsic
def vlane(typingctx, v, index):
    def codegen(context, builder, sig, args):
        idx = context.cast(builder, args[1], sig.args[1], types.int32)
        return builder.extract_element(args[0], idx)

    return types.float32(f32x16, index), codegen
