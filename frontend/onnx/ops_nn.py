"""Converters for convolution, pooling and normalisation. 1-D convs and pools run as 2-D ones
over a height of 1; 3-D pools are separable box windows (H and W, then D); a 3-D conv becomes
one 2-D conv over (image, output depth) pairs whose channels are (channel, depth tap)."""

from __future__ import annotations

import math

import numpy as np

from .context import ConvertError, ImportContext
from .converters import NodeView, converter, ints, spatial_pads

_WINDOW = ("auto_pad", "kernel_shape", "pads", "strides")


def _spatial_rank(ctx: ImportContext, x: str, what: str) -> int:
    t = ctx.type(x)
    rank = t.rank - 2
    if rank not in (1, 2, 3):
        raise ConvertError(f"{rank}-D {what} (input {t}); kiln supports 1-D, 2-D and 3-D")
    return rank


def _as_2d(ctx: ImportContext, x: str) -> str:
    n, c, length = ctx.type(x).shape
    return ctx.emit("reshape", [x], {"shape": (n, c, 1, length)})


def _window_attrs(node: NodeView, sizes, kernel, rank: int) -> dict:
    strides = ints(node.attr("strides"), rank, 1, "strides")
    dil = ints(node.attr("dilations"), rank, 1, "dilations")
    begins, ends = spatial_pads(node, sizes, kernel, strides, dil)
    if rank == 1:  # height 1: no stride, dilation or padding along it
        strides, dil, begins, ends = [1, *strides], [1, *dil], [0, *begins], [0, *ends]
    return {"stride": strides, "dilation": dil, "pads": (begins[0], begins[1], ends[0], ends[1])}


def _finish(ctx: ImportContext, y: str, rank: int, out: str) -> str:
    if rank == 2:
        return y
    n, c, _, length = ctx.type(y).shape
    return ctx.emit("reshape", [y], {"shape": (n, c, length)}, out=out)


def _depth_taps(ctx: ImportContext, x: str, kd: int, sd: int, dd: int, pads: tuple[int, int]) -> tuple[str, int]:
    """x [N, C, D, H, W] -> [N*OD, C*KD, H, W]: for every output depth, the KD input planes its
    window reads (zero padding included), stacked as channels (c, k). Built from crops (pads
    with negative widths), reshapes, one concat and one transpose: no arithmetic, so every
    value is copied exactly."""
    from ...ir.ops.conv import window_out

    n, c, d, h, w = ctx.type(x).shape
    od = window_out(d, kd, sd, dd, *pads)
    length = max(d + pads[0] + pads[1], (kd - 1) * dd + sd * od)  # every tap's strided run fits
    tail = length - d - pads[0]
    if pads[0] or tail:
        x = ctx.emit("pad", [x], {"pads": (0, 0, pads[0], 0, 0, 0, 0, tail, 0, 0)})
    taps = []
    for k in range(kd):
        t = ctx.emit("pad", [x], {"pads": (0, 0, -k * dd, 0, 0, 0, 0, -(length - k * dd - sd * od), 0, 0)})
        t = ctx.emit("reshape", [t], {"shape": (n, c, od, sd, h * w)})
        if sd > 1:  # keep the first of every sd planes: the window starts
            t = ctx.emit("pad", [t], {"pads": (0, 0, 0, 0, 0, 0, 0, 0, -(sd - 1), 0)})
        taps.append(t)
    stacked = ctx.emit("concat", taps, {"axis": 3}) if kd > 1 else taps[0]
    moved = ctx.emit("transpose", [stacked], {"perm": (0, 2, 1, 3, 4)})
    return ctx.emit("reshape", [moved], {"shape": (n * od, c * kd, h, w)}), od


def _conv3d(ctx: ImportContext, node: NodeView, x: str, w: str, b: str | None, kernel) -> str:
    strides = ints(node.attr("strides"), 3, 1, "strides")
    dil = ints(node.attr("dilations"), 3, 1, "dilations")
    begins, ends = spatial_pads(node, ctx.type(x).shape[2:], kernel, strides, dil)
    x2, od = _depth_taps(ctx, x, kernel[0], strides[0], dil[0], (begins[0], ends[0]))
    m, cg, kd, kh, kw = ctx.type(w).shape
    w2 = ctx.emit("reshape", [w], {"shape": (m, cg * kd, kh, kw)})
    attrs = {"stride": strides[1:], "dilation": dil[1:], "pads": (begins[1], begins[2], ends[1], ends[2]),
             "groups": int(node.attr("group", 1))}
    y = ctx.emit("conv2d", [x2, w2] + ([b] if b else []), attrs)
    n = ctx.type(x).shape[0]
    _, _, oh, ow = ctx.type(y).shape
    y = ctx.emit("reshape", [y], {"shape": (n, od, m, oh, ow)})
    return ctx.emit("transpose", [y], {"perm": (0, 2, 1, 3, 4)}, out=node.outputs[0])


@converter("Conv", since=1, attrs=(*_WINDOW, "dilations", "group"))
def conv(ctx: ImportContext, node: NodeView) -> list:
    x, w, b = node.input(0), node.input(1), node.input(2)
    rank = _spatial_rank(ctx, x, "convolution")
    wt = ctx.type(w)
    kernel = list(wt.shape[2:])
    if node.attr("kernel_shape") is not None and list(node.attr("kernel_shape")) != kernel:
        raise ConvertError(f"kernel_shape {node.attr('kernel_shape')} disagrees with weight {wt}")
    if rank == 3:
        return [_conv3d(ctx, node, x, w, b, kernel)]
    attrs = _window_attrs(node, ctx.type(x).shape[2:], kernel, rank)
    attrs["groups"] = int(node.attr("group", 1))
    if rank == 1:
        x = _as_2d(ctx, x)
        if wt.rank != 3:
            raise ConvertError(f"weight {wt} of a 1-D convolution must be 3-D")
        m, cg, k = wt.shape
        w = ctx.emit("reshape", [w], {"shape": (m, cg, 1, k)})
    ins = [x, w] + ([b] if b else [])
    y = ctx.emit("conv2d", ins, attrs, out=node.outputs[0] if rank == 2 else None)
    return [_finish(ctx, y, rank, node.outputs[0])]


def _pool(ctx: ImportContext, node: NodeView, op: str, extra: dict, out: str | None = None) -> list:
    x = node.input(0)
    t = ctx.type(x)
    rank = t.rank - 2
    if rank not in (1, 2, 3):
        raise ConvertError(f"{rank}-D pooling (input {t}); kiln supports 1-D, 2-D and 3-D")
    kernel = list(node.attr("kernel_shape") or [])
    if len(kernel) != rank:
        raise ConvertError(f"kernel_shape {kernel} does not match the {rank} spatial axes of the input")
    strides = ints(node.attr("strides"), rank, 1, "strides")
    dil = ints(node.attr("dilations"), rank, 1, "dilations")
    auto = node.attr("auto_pad", "NOTSET")
    for axis, (size, k, s, d) in enumerate(zip(t.shape[2:], kernel, strides, dil, strict=True)):
        total = (math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size if s > 0 else 0
        if auto in ("SAME_UPPER", "SAME_LOWER") and total < 0:
            raise ConvertError(f"auto_pad={auto} with stride {s} and kernel {k} over size {size} (spatial axis "
                               f"{axis}) pads by {total} by ONNX's formula; pooling pads must be >= 0 (onnxruntime's "
                               "MaxPool refuses them too)")
    begins, ends = spatial_pads(node, t.shape[2:], kernel, strides, dil)
    common = {"ceil_mode": bool(node.attr("ceil_mode", 0)), **extra}

    def pool2d(v: str, axes: tuple[int | None, int | None], out: str | None) -> str:
        """Pool the image axes (height, width) of `v` as spatial axes `axes`; None: window of 1."""
        def per_axis(values, trivial):
            return [trivial if i is None else values[i] for i in axes]

        attrs = {"kernel": per_axis(kernel, 1), "stride": per_axis(strides, 1),
                 "dilation": per_axis(dil, 1), "pads": (*per_axis(begins, 0), *per_axis(ends, 0)), **common}
        return ctx.emit(op, [v], attrs, out=out)

    n, c, *sizes = t.shape
    if rank == 2:
        return [pool2d(x, (0, 1), out or node.outputs[0])]
    if rank == 1:
        y = pool2d(ctx.emit("reshape", [x], {"shape": (n, c, 1, sizes[0])}), (None, 0), None)
        return [ctx.emit("reshape", [y], {"shape": (n, c, ctx.type(y).shape[3])}, out=node.outputs[0])]
    # 3-D: a box window is separable (max of maxes; sums and cell counts factor per axis), so pool
    # H and W as images, then D as a height over the flattened H'W' columns.
    d0, h0, w0 = sizes
    hw = pool2d(ctx.emit("reshape", [x], {"shape": (n, c * d0, h0, w0)}), (1, 2), None)
    _, _, h1, w1 = ctx.type(hw).shape
    dd = pool2d(ctx.emit("reshape", [hw], {"shape": (n, c, d0, h1 * w1)}), (0, None), None)
    d1 = ctx.type(dd).shape[2]
    return [ctx.emit("reshape", [dd], {"shape": (n, c, d1, h1, w1)}, out=node.outputs[0])]


def _no_extra_outputs(ctx: ImportContext, node: NodeView, what: str) -> None:
    if any(o for o in node.outputs[1:] if o in ctx.wanted):
        raise ConvertError(f"the {what} output is not supported (inference imports only)")


@converter("MaxPool", since=1, attrs=(*_WINDOW, "ceil_mode", "dilations", "storage_order"))
def maxpool(ctx: ImportContext, node: NodeView) -> list:
    """MaxPool; its Indices output, when read, is a maxpool2d_argmax node over the same windows."""
    values = _pool(ctx, node, "maxpool2d", {})
    if not any(o for o in node.outputs[1:] if o in ctx.wanted):
        return values
    if ctx.type(node.input(0)).rank != 4:
        raise ConvertError("the Indices output is supported for 2-D pooling only")
    extra = {"storage_order": int(node.attr("storage_order", 0))}
    return values + _pool(ctx, node, "maxpool2d_argmax", extra, out=node.outputs[1])


@converter("AveragePool", since=1, attrs=(*_WINDOW, "ceil_mode", "count_include_pad", "dilations"))
def avgpool(ctx: ImportContext, node: NodeView) -> list:
    return _pool(ctx, node, "avgpool2d", {"count_include_pad": bool(node.attr("count_include_pad", 0))})


@converter("GlobalAveragePool", since=1)
def global_avgpool(ctx: ImportContext, node: NodeView) -> list:
    return [ctx.emit("global_avgpool", [node.input(0)], out=node.outputs[0])]


@converter("GlobalMaxPool", since=1)
def global_maxpool(ctx: ImportContext, node: NodeView) -> list:
    return [ctx.emit("global_maxpool", [node.input(0)], out=node.outputs[0])]


@converter("BatchNormalization", since=1, attrs=("epsilon", "momentum", "spatial", "is_test",
                                                 "consumed_inputs", "training_mode"))
def batch_norm(ctx: ImportContext, node: NodeView) -> list:
    """Inference form; with training_mode=1 (opset 14+), batch statistics and the updated
    running statistics as outputs 2 and 3 (ONNX updates the variance with the biased one)."""
    if node.attr("spatial", 1) != 1:
        raise ConvertError("spatial=0 (per-activation statistics) is not supported")
    x, scale, bias, mean, var = node.inputs[:5]
    attrs = {"epsilon": node.attr("epsilon", 1e-5), "momentum": node.attr("momentum", 0.9)}
    if node.attr("training_mode", 0):
        running = [(list(node.outputs[1:3]) + ["", ""])[i] or None for i in range(2)]
        names = ctx.emit_all("batch_norm_train", [x, scale, bias, mean, var],
                             {**attrs, "unbiased_running_var": False}, [node.outputs[0], None, None, *running])
        return [names[0], names[3], names[4]][:len(node.outputs)]
    _no_extra_outputs(ctx, node, "running statistics")
    for stat in (mean, var):
        ctx.roles.setdefault(stat, "buffer")
    return [ctx.emit("batch_norm", [x, scale, bias, mean, var], attrs, out=node.outputs[0])]


@converter("LRN", since=1, attrs=("size", "alpha", "beta", "bias"))
def lrn(ctx: ImportContext, node: NodeView) -> list:
    attrs = {"size": node.attr("size"), "alpha": node.attr("alpha", 1e-4), "beta": node.attr("beta", 0.75),
             "bias": node.attr("bias", 1.0)}
    return [ctx.emit("lrn", [node.input(0)], attrs, out=node.outputs[0])]


@converter("Dropout", since=1, attrs=("ratio", "is_test", "seed", "consumed_inputs"))
def dropout(ctx: ImportContext, node: NodeView) -> list:
    """Identity at inference; the mask output, if read, is all true (nothing dropped)."""
    training = node.input(2)
    if training and bool(ctx.scalar_of(training, "Dropout's training_mode")):
        ratio = float(ctx.scalar_of(node.input(1), "Dropout's ratio")) if node.input(1) else 0.5
        if ratio != 0:
            raise ConvertError("training_mode=True with a ratio above 0 (a random mask) is not imported; import "
                               "the inference form and train with kiln.compile(mode='train'), whose dropout "
                               "masks are seeded")
    y = ctx.emit("identity", [node.input(0)], out=node.outputs[0])
    if len(node.outputs) > 1 and node.outputs[1]:
        ctx.set_known(node.outputs[1], np.ones(ctx.type(y).shape, np.bool_))
    return [y]


def _transposed_hw(ctx: ImportContext, x: str, w: str, strides, dil, begins, ends, full, groups: int) -> str:
    """conv2d_grad_input over H and W: crops from positive pads, zero rows and columns from
    negative ones."""
    crop_lo, crop_hi = [max(p, 0) for p in begins], [max(p, 0) for p in ends]
    hw = [f - lo - hi for f, lo, hi in zip(full, crop_lo, crop_hi)]
    attrs = {"stride": strides, "dilation": dil, "pads": (*crop_lo, *crop_hi), "groups": groups, "input_hw": hw}
    y = ctx.emit("conv2d_grad_input", [x, w], attrs)
    grow = [max(-p, 0) for p in begins] + [max(-p, 0) for p in ends]
    if any(grow):
        y = ctx.emit("pad", [y], {"pads": (0, 0, grow[0], grow[1], 0, 0, grow[2], grow[3])})
    return y


def _conv_transpose3d(ctx: ImportContext, node: NodeView, x: str, w: str, b: str | None, strides, dil,
                      begins, ends, full) -> str:
    """A 3-D transposed convolution as one 2-D one over every input depth plane, whose output
    channels are (channel, depth tap) (W [C_in, C_out/g, KD, KH, KW] read as [C_in, C_out/g * KD,
    KH, KW]), then each tap's planes placed at depths d * stride + k * dilation (a zero-stuffing
    reshape and pad, a shift) and the taps summed; the depth pads crop (or, negative, extend)."""
    n, cin, d, h, wd = ctx.type(x).shape
    _, cg, kd, kh, kw = ctx.type(w).shape
    groups = int(node.attr("group", 1))
    cout = cg * groups
    planes = ctx.emit("reshape", [ctx.emit("transpose", [x], {"perm": (0, 2, 1, 3, 4)})], {"shape": (n * d, cin, h, wd)})
    w2 = ctx.emit("reshape", [w], {"shape": (cin, cg * kd, kh, kw)})
    y = _transposed_hw(ctx, planes, w2, strides[1:], dil[1:], begins[1:], ends[1:], full[1:], groups)
    _, _, oh, ow = ctx.type(y).shape
    y = ctx.emit("reshape", [y], {"shape": (n, d, cout, kd, oh * ow)})
    sd, dd, length = strides[0], dil[0], full[0]
    run = (d - 1) * sd + 1  # one tap's depths, input plane d at d * sd
    total = None
    for k in range(kd):
        t = ctx.emit("pad", [y], {"pads": (0, 0, 0, -k, 0, 0, 0, 0, -(kd - 1 - k), 0)})  # tap k: [n, d, cout, 1, p]
        if sd > 1:  # zero-stuff the depth: [n, d, sd, cout, p] -> [n, d * sd, ...], trailing zeros cut
            t = ctx.emit("reshape", [t], {"shape": (n, d, 1, cout, oh * ow)})
            t = ctx.emit("pad", [t], {"pads": (0, 0, 0, 0, 0, 0, 0, sd - 1, 0, 0)})
            t = ctx.emit("reshape", [t], {"shape": (n, d * sd, cout, oh * ow)})
            t = ctx.emit("pad", [t], {"pads": (0, 0, 0, 0, 0, -(sd - 1), 0, 0)})
        else:
            t = ctx.emit("reshape", [t], {"shape": (n, d, cout, oh * ow)})
        t = ctx.emit("pad", [t], {"pads": (0, k * dd, 0, 0, 0, length - run - k * dd, 0, 0)})
        total = t if total is None else ctx.emit("add", [total, t])
    total = ctx.emit("pad", [total], {"pads": (0, -begins[0], 0, 0, 0, -ends[0], 0, 0)}) if begins[0] or ends[0] \
        else total
    od = length - begins[0] - ends[0]
    total = ctx.emit("transpose", [ctx.emit("reshape", [total], {"shape": (n, od, cout, oh, ow)})],
                     {"perm": (0, 2, 1, 3, 4)})
    if b:
        total = ctx.emit("add", [total, ctx.emit("reshape", [b], {"shape": (cout, 1, 1, 1)})])
    return ctx.emit("identity", [total], out=node.outputs[0])


@converter("ConvTranspose", since=1, attrs=(*_WINDOW, "dilations", "group", "output_padding", "output_shape"))
def conv_transpose(ctx: ImportContext, node: NodeView) -> list:
    """The gradient of a convolution with respect to its input, which is what a transposed
    convolution is: kiln's conv2d_grad_input of x by W (W is [C_in, C_out / group, kh, kw],
    the forward conv's OIHW weight read with its roles swapped). The output size is ONNX's
    stride * (in - 1) + output_padding + (k - 1) * dilation + 1 - pads, or output_shape with the
    padding that gives it. Negative padding (an output_shape past the full size) adds zero
    rows and columns; the bias is added last."""
    x, w, b = node.input(0), node.input(1), node.input(2)
    rank = _spatial_rank(ctx, x, "transposed convolution")
    wt, sizes = ctx.type(w), list(ctx.type(x).shape[2:])
    kernel = list(wt.shape[2:])
    if node.attr("kernel_shape") is not None and list(node.attr("kernel_shape")) != kernel:
        raise ConvertError(f"kernel_shape {node.attr('kernel_shape')} disagrees with weight {wt}")
    strides = ints(node.attr("strides"), rank, 1, "strides")
    dil = ints(node.attr("dilations"), rank, 1, "dilations")
    out_pad = ints(node.attr("output_padding"), rank, 0, "output_padding")
    full = [s * (n - 1) + op + (k - 1) * d + 1 for n, s, op, k, d in zip(sizes, strides, out_pad, kernel, dil)]
    auto = node.attr("auto_pad", "NOTSET") or "NOTSET"
    shape = node.attr("output_shape")
    if shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        target = list(shape)[-rank:] if shape is not None else [n * s for n, s in zip(sizes, strides)]
        total = [f - t for f, t in zip(full, target)]
        upper = auto == "SAME_UPPER"
        begins = [t // 2 if upper else t - t // 2 for t in total]
        ends = [t - t // 2 if upper else t // 2 for t in total]
    elif auto == "VALID":
        begins = ends = [0] * rank
    elif auto == "NOTSET":
        pads = ints(node.attr("pads"), 2 * rank, 0, "pads")
        begins, ends = pads[:rank], pads[rank:]
    else:
        raise ConvertError(f"auto_pad={auto!r} is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    for axis, (op, s, d) in enumerate(zip(out_pad, strides, dil)):
        if not 0 <= op < s:
            raise ConvertError(f"output_padding {out_pad} must be in [0, stride) on every axis (axis {axis}: "
                               f"stride {s}, dilation {d})")
    if wt.rank != rank + 2 or wt.shape[0] != ctx.type(x).shape[1]:
        raise ConvertError(f"weight {wt} does not match input {ctx.type(x)} (expects [C_in, C_out/group, k...])")
    if rank == 3:
        return [_conv_transpose3d(ctx, node, x, w, b, strides, dil, begins, ends, full)]
    if rank == 1:
        x = _as_2d(ctx, x)
        w = ctx.emit("reshape", [w], {"shape": (wt.shape[0], wt.shape[1], 1, kernel[0])})
        strides, dil, kernel, full = [1, *strides], [1, *dil], [1, *kernel], [1, *full]
        begins, ends = [0, *begins], [0, *ends]
    y = _transposed_hw(ctx, x, w, strides, dil, begins, ends, full, int(node.attr("group", 1)))
    if b:
        y = ctx.emit("add", [y, ctx.emit("reshape", [b], {"shape": (ctx.type(b).shape[0], 1, 1)})])
    return [_finish(ctx, ctx.emit("identity", [y], out=node.outputs[0] if rank == 2 else None), rank,
                    node.outputs[0])]


# -- Resize and Upsample: one kiln resize, the scales and output sizes fixed at compile time ---
ROI_LIMIT = 1e6
CUBIC_A_LIMIT = 1e3
_RESIZE_ATTRS = ("mode", "coordinate_transformation_mode", "cubic_coeff_a", "exclude_outside",
                 "extrapolation_value", "nearest_mode", "antialias", "axes", "keep_aspect_ratio_policy")


def _floats(ctx: ImportContext, name: str | None, what: str) -> list[float] | None:
    """A known float input as a list; None when absent or empty (ONNX's "not given")."""
    if not name:
        return None
    v = ctx.value_of(name, f"Resize's {what}").reshape(-1)
    return [float(s) for s in v] if v.size else None


def _emit_resize(ctx: ImportContext, node: NodeView, scales, sizes, roi, attrs: dict) -> list:
    x = node.input(0)
    shape = list(ctx.type(x).shape)
    rank = len(shape)
    axes = [int(a) + rank if a < 0 else int(a) for a in (node.attr("axes") or range(rank))]
    if any(not 0 <= a < rank for a in axes) or len(set(axes)) != len(axes):
        raise ConvertError(f"axes {node.attr('axes')} are not distinct axes of a rank-{rank} input")
    given = sizes if sizes is not None else scales
    if given is None:
        raise ConvertError("Resize needs scales or sizes")
    if len(given) != len(axes):
        raise ConvertError(f"{'sizes' if sizes is not None else 'scales'} {given} need one value per axis {axes}")
    full_scales, full_sizes = [1.0] * rank, list(shape)
    if sizes is not None:
        for a, n in zip(axes, sizes, strict=True):
            full_sizes[a], full_scales[a] = int(n), int(n) / shape[a] if shape[a] else 1.0
        policy = node.attr("keep_aspect_ratio_policy", "stretch")
        if policy in ("not_larger", "not_smaller"):
            pick = min if policy == "not_larger" else max
            s = pick(full_scales[a] for a in axes)
            for a in axes:
                full_scales[a], full_sizes[a] = s, int(s * shape[a] + 0.5)
        elif policy != "stretch":
            raise ConvertError(f"keep_aspect_ratio_policy {policy!r} is not stretch, not_larger or not_smaller")
    else:
        for a, s in zip(axes, scales, strict=True):
            if not (math.isfinite(s) and s > 0):
                raise ConvertError(f"scales {scales} must be positive and finite")
            full_scales[a], full_sizes[a] = s, int(np.floor(s * shape[a]))
    empty = [a for a in axes if shape[a] == 0 and full_sizes[a] != 0]
    if empty:
        raise ConvertError(f"axis {empty[0]} of the input {ctx.type(x)} is empty: there is nothing to resize to "
                           f"{full_sizes[empty[0]]}")
    full_roi = []
    if attrs["coord"] == "tf_crop_and_resize":
        if roi is None or len(roi) != 2 * len(axes):
            raise ConvertError(f"tf_crop_and_resize needs a roi of {2 * len(axes)} values, got {roi}")
        if not all(abs(r) <= ROI_LIMIT for r in roi):  # NaN fails too
            raise ConvertError(f"roi {roi} reaches past +-{ROI_LIMIT:g} (normalised coordinates): so far outside "
                               "the image every output is the extrapolation value, and runtimes that transform "
                               "coordinates in float32 overflow")
        full_roi = [0.0] * rank + [1.0] * rank
        for k, a in enumerate(axes):
            full_roi[a], full_roi[rank + a] = roi[k], roi[len(axes) + k]
    if not abs(attrs.get("cubic_a", -0.75)) <= CUBIC_A_LIMIT:
        raise ConvertError(f"cubic_coeff_a={attrs['cubic_a']} is outside +-{CUBIC_A_LIMIT:g}: such kernels cancel "
                           "catastrophically, and runtimes weighing in float32 and float64 disagree")
    if attrs["mode"] == "nearest" and attrs.get("antialias"):
        raise ConvertError("antialias applies to linear and cubic resizing, not nearest")
    return [ctx.emit("resize", [x], {**attrs, "scales": full_scales, "sizes": full_sizes, "roi": full_roi},
                     out=node.outputs[0])]


def _resize_mode(node: NodeView) -> str:
    mode = node.attr("mode", "nearest")
    mode = {"bilinear": "linear", "trilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    if mode not in ("nearest", "linear", "cubic"):
        raise ConvertError(f"mode {node.attr('mode')!r} is not nearest, linear or cubic")
    return mode


def _legacy_resize(ctx: ImportContext, node: NodeView, scales) -> list:
    """Upsample and opset-10 Resize: asymmetric coordinates; nearest takes floor(x) when
    enlarging and ceil(x) when shrinking, as onnxruntime does."""
    if not scales:
        raise ConvertError(f"{node.op_type} needs scales")
    mode = _resize_mode(node)
    shrink = any(s < 1 for s in scales)
    attrs = {"mode": mode, "coord": "asymmetric", "nearest_mode": "ceil" if shrink else "floor"}
    return _emit_resize(ctx, node, [float(s) for s in scales], None, None, attrs)


@converter("Upsample", since=7, attrs=("mode", "scales"))
def upsample_attr(ctx: ImportContext, node: NodeView) -> list:
    return _legacy_resize(ctx, node, node.attr("scales"))


@converter("Upsample", since=9, attrs=("mode",))
def upsample_input(ctx: ImportContext, node: NodeView) -> list:
    return _legacy_resize(ctx, node, _floats(ctx, node.input(1), "scales"))


@converter("Resize", since=10, attrs=("mode",))
def resize_10(ctx: ImportContext, node: NodeView) -> list:
    return _legacy_resize(ctx, node, _floats(ctx, node.input(1), "scales"))


@converter("Resize", since=11, attrs=_RESIZE_ATTRS)
def resize(ctx: ImportContext, node: NodeView) -> list:
    sizes = None
    if node.input(3):
        sizes = ctx.ints_of(node.input(3), "Resize's sizes") or None
    attrs = {"mode": _resize_mode(node),
             "coord": node.attr("coordinate_transformation_mode", "half_pixel"),
             "nearest_mode": node.attr("nearest_mode", "round_prefer_floor"),
             "cubic_a": float(node.attr("cubic_coeff_a", -0.75)),
             "exclude_outside": bool(node.attr("exclude_outside", 0)),
             "antialias": bool(node.attr("antialias", 0)),
             "extrapolation": float(node.attr("extrapolation_value", 0.0))}
    return _emit_resize(ctx, node, _floats(ctx, node.input(2), "scales"), sizes,
                        _floats(ctx, node.input(1), "roi"), attrs)
