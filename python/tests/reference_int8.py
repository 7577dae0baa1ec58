"""Independent numpy reference of the TFLite int8 integer arithmetic.

Written from the TFLite int8 quantization spec and TFLite's reference
kernels (quantization_util.cc QuantizeMultiplier, gemmlowp's
SaturatingRoundingDoublingHighMul / RoundingDivideByPOT, double rounding),
not from tinyinfer's Swift. Plain and slow: every integer is held in numpy
int64 and wrapped to int32 where the C code computes in int32; every float
computation that TFLite does in float32 is done in numpy float32, and the
ones it does in double in float64.

Quantization parameters are passed as `(scale, zero_point)` pairs; `scale`
may be an array (per-channel weights) with `zero_point` 0 or an array.

Rounding rules: TFLite rounds half away from zero everywhere (std::round,
TfLiteRound, RoundingDivideByPOT); `quantize(..., mode=1)` rounds half to
even as ONNX QuantizeLinear does.
"""
import ctypes
import ctypes.util
import math

import numpy as np

from reference import transpose_conv_out, window_out

I32_MIN = -(1 << 31)
I32_MAX = (1 << 31) - 1
QMIN = {"int8": -128, "uint8": 0, "int16": -32768}
QMAX = {"int8": 127, "uint8": 255, "int16": 32767}
F32 = np.float32


# ----------------------------------------------------------------------------
# Scalar helpers

def _i64(a):
    return np.asarray(a, dtype=np.int64)


def wrap32(v):
    """Two's complement wrap of int64 values to int32 (C int32 overflow as it
    happens on the machines TFLite runs on)."""
    v = _i64(v)
    return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def wrap16(v):
    v = _i64(v)
    return ((v + (1 << 15)) & 0xFFFF) - (1 << 15)


def _tdiv(a, d):
    """C integer division (truncation toward zero), d > 0."""
    a = _i64(a)
    return np.where(a >= 0, a // d, -((-a) // d))


def round_half_away(x):
    """std::round / roundf: half away from zero, exactly, keeping the dtype."""
    x = np.asarray(x)
    t = np.trunc(x)
    with np.errstate(invalid="ignore"):
        frac = x - t  # exact (NaN for infinities, which stay as they are)
    return np.where(np.abs(frac) >= 0.5, t + np.sign(x), t).astype(x.dtype)


def clz32(x):
    x = int(x) & 0xFFFFFFFF
    return 32 - x.bit_length()


# ----------------------------------------------------------------------------
# QuantizeMultiplier and the gemmlowp fixed-point primitives

def quantize_multiplier(m):
    """TFLite QuantizeMultiplier (double rounding build): m ~= q * 2^(shift - 31)
    with q in [2^30, 2^31). Returns (q, shift). Tiny multipliers flush to (0, 0)."""
    m = float(m)
    if m == 0.0:
        return 0, 0
    q, shift = math.frexp(m)  # q in [0.5, 1)
    qf = q * float(1 << 31)  # exact
    q_fixed = int(math.copysign(math.floor(abs(qf) + 0.5), qf))  # std::round; exact for |qf| < 2^52
    assert abs(q_fixed) <= (1 << 31)
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def srdhm(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values."""
    a, b = _i64(a), _i64(b)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    r = _tdiv(ab + nudge, 1 << 31)
    return np.where((a == b) & (a == I32_MIN), I32_MAX, r)


def rdbpot(x, e):
    """gemmlowp RoundingDivideByPOT (round half away from zero), int32."""
    x, e = _i64(x), _i64(e)
    mask = (np.int64(1) << e) - 1
    rem = x & mask
    thr = (mask >> 1) + (x < 0)
    return (x >> e) + (rem > thr)


def mbqm(x, m, shift):
    """MultiplyByQuantizedMultiplier, double rounding (TFLite's default)."""
    shift = _i64(shift)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    return rdbpot(srdhm(wrap32(_i64(x) << left), m), right)


def sat_shl(x, e):
    """gemmlowp SaturatingRoundingMultiplyByPOT<e> for e > 0, int32."""
    x = _i64(x)
    thr = (1 << (31 - e)) - 1
    return np.where(x > thr, I32_MAX, np.where(x < -thr, I32_MIN, wrap32(x << e)))


def srdhm16(a, b):
    a, b = _i64(a), _i64(b)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    r = _tdiv(ab + nudge, 1 << 15)
    return np.where((a == b) & (a == -32768), 32767, wrap16(r))


def rdbpot16(x, e):
    """gemmlowp RoundingDivideByPOT instantiated on int16 (C integer promotion
    and truncation back to int16 at every gemmlowp primitive)."""
    x = _i64(x)
    mask = int(wrap16((1 << int(e)) - 1))
    rem = wrap16(x & mask)
    thr = wrap16((mask >> 1) + (x < 0))
    return wrap16(wrap16(x >> int(e)) + (rem > thr))


def quantize_value(f, scale, zp):
    """kernel_util's Quantize(): zp + (int)roundf(f / scale) in float32."""
    t = round_half_away(F32(f) / F32(scale))
    if not (float(I32_MIN) <= float(t) <= float(I32_MAX)):
        raise ValueError("activation bound does not fit int32")
    return int(zp) + int(t)


def act_range(activation, scale, zp, dtype="int8"):
    """CalculateActivationRangeQuantized: 0 none, 1 relu, 2 relu6, 3 relu_n1_to_1."""
    lo, hi = QMIN[dtype], QMAX[dtype]
    if activation == 1:
        return max(lo, quantize_value(0.0, scale, zp)), hi
    if activation == 2:
        return max(lo, quantize_value(0.0, scale, zp)), min(hi, quantize_value(6.0, scale, zp))
    if activation == 3:
        return max(lo, quantize_value(-1.0, scale, zp)), min(hi, quantize_value(1.0, scale, zp))
    return lo, hi


def _clamp(v, lo, hi):
    return np.minimum(np.maximum(_i64(v), lo), hi)


def _s(q):
    return q[0]


def _z(q):
    return q[1]


# ----------------------------------------------------------------------------
# Quantize / Dequantize

def quantize(x, scale, zero_point, dtype="int8", axis=None, mode=0):
    """float32 -> int: clamp(round(x / scale) + zp) with the division in float32.
    mode 0 rounds half away from zero (TFLite), 1 half to even (ONNX). NaN
    gives the zero point."""
    x = np.asarray(x, dtype=F32)
    scale = np.asarray(scale, dtype=F32)
    zp = _i64(zero_point)
    if axis is not None:
        shp = [1] * x.ndim
        shp[axis] = -1
        scale = scale.reshape(shp)
        zp = zp.reshape(shp)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        v = x / scale  # float32
    r = round_half_away(v) if mode == 0 else np.rint(v)
    r = np.where(np.isnan(r), 0, r).astype(np.float64)
    r = np.clip(r, -2.0**40, 2.0**40).astype(np.int64)
    out = _clamp(r + zp, QMIN[dtype], QMAX[dtype])
    return out.astype(np.dtype(dtype))


def requantize(x, in_q, out_q, dtype="int8"):
    """int -> int with QuantizeMultiplier(in_scale / out_scale) (TFLite Quantize on ints)."""
    m, s = quantize_multiplier(float(F32(in_q[0])) / float(F32(out_q[0])))
    v = mbqm(_i64(x) - in_q[1], m, s) + out_q[1]
    return _clamp(v, QMIN[dtype], QMAX[dtype]).astype(np.dtype(dtype))


def dequantize(x, scale, zero_point, axis=None):
    """(x - zp) * scale: per tensor in double then rounded to float (TFLite
    Dequantize), per axis in float32 (PerChannelDequantize). float16 input:
    pass scale=None."""
    x = np.asarray(x)
    if scale is None:
        return x.astype(F32)
    v = _i64(x)
    if axis is None:
        return (float(F32(scale)) * (v - int(zero_point)).astype(np.float64)).astype(F32)
    shp = [1] * x.ndim
    shp[axis] = -1
    s = np.asarray(scale, dtype=F32).reshape(shp)
    z = _i64(zero_point).reshape(shp)
    return (s * (v - z).astype(F32)).astype(F32)


# ----------------------------------------------------------------------------
# FullyConnected, Conv2D, DepthwiseConv2D

def _requant(acc, mults, shifts, y_q, lo, hi):
    return _clamp(mbqm(acc, mults, shifts) + _z(y_q), lo, hi).astype(np.int8)


def fully_connected(x, x_q, w, w_q, bias, y_q, activation=0, requant="float"):
    """x int8 [..., K], w int8 [N, K] (per tensor, any zero point; or per
    channel along dim 0, zero points 0), bias int32 [N] or None.
    requant "float" (default): round(acc * (in_s * w_s / out_s)) in double,
    half away from zero, which LiteRT's BUILTIN_REF resolver does for
    FullyConnected since April 2025 (ai-edge-litert 2.3, the pinned peer) and
    tinyinfer does; "multiplier": QuantizeMultiplier +
    MultiplyByQuantizedMultiplier with double rounding (older TFLite's
    FullyConnected reference kernel, as its Conv2D and DepthwiseConv2D
    reference kernels still do)."""
    K = x.shape[-1]
    N = w.shape[0]
    xs, xz = x_q
    ws, wz = w_q
    per_channel = np.size(ws) > 1
    xm = _i64(x).reshape(-1, K) - xz
    wm = _i64(w) if per_channel else _i64(w) - int(np.ravel([wz])[0])
    acc = xm @ wm.T
    if bias is not None:
        acc = acc + _i64(bias).reshape(1, N)
    acc = wrap32(acc)
    lo, hi = act_range(activation, _s(y_q), _z(y_q))
    if requant == "float":
        wsv = np.broadcast_to(np.asarray(ws, dtype=F32).reshape(-1), (N,)).astype(np.float64)
        eff = float(F32(xs)) * wsv / float(F32(_s(y_q)))
        v = round_half_away(acc.astype(np.float64) * eff).astype(np.int64)
        return _clamp(v + _z(y_q), lo, hi).astype(np.int8).reshape(x.shape[:-1] + (N,))
    if per_channel:
        ms = [quantize_multiplier(float(F32(xs)) * float(F32(s)) / float(F32(_s(y_q)))) for s in np.ravel(ws)]
    else:
        prod = F32(F32(xs) * F32(np.ravel([ws])[0]))  # float product (GetQuantizedConvolutionMultipler)
        ms = [quantize_multiplier(float(prod) / float(F32(_s(y_q))))] * N
    mults = _i64([m for m, _ in ms]).reshape(1, N)
    shifts = _i64([s for _, s in ms]).reshape(1, N)
    return _requant(acc, mults, shifts, y_q, lo, hi).reshape(x.shape[:-1] + (N,))


def _requant_float32(acc, xs, ws, ys, n, y_q, lo, hi):
    """The float32 output stage (a model quantized by tinyinfer with
    requantization "float32", as XNNPACK and onnxruntime requantize): the
    channel's scale s_x s_w / s_y in double rounded to float32, the int32
    accumulator rounded to float32, their float32 product rounded half to
    even, + zp, clamped."""
    wsv = np.broadcast_to(np.asarray(ws, dtype=F32).reshape(-1), (n,))
    s = np.array([float(F32(xs)) * float(w) / float(F32(ys)) for w in wsv], np.float64).astype(F32)
    f = wrap32(acc).astype(np.int32).astype(F32) * s
    v = np.rint(np.clip(f, -32768, 32767)).astype(np.int64) + _z(y_q)
    return _clamp(v, lo, hi).astype(np.int8)


def _conv_stage(acc, x_q, ws, y_q, n, activation, requant):
    """Conv2D's, DepthwiseConv2D's and TransposeConv2D's per-channel output
    stage: TFLite's fixed-point multipliers ("fixed") or "float32"."""
    lo, hi = act_range(activation, _s(y_q), _z(y_q))
    if requant == "float32":
        return _requant_float32(acc, _s(x_q), ws, _s(y_q), n, y_q, lo, hi)
    assert requant == "fixed", requant
    m, s = _conv_multipliers(_s(x_q), ws, _s(y_q), n)
    return _requant(acc, m, s, y_q, lo, hi)


def _conv_multipliers(xs, ws, ys, n):
    wsv = np.broadcast_to(np.asarray(ws, dtype=F32).reshape(-1), (n,))
    ms = [quantize_multiplier(float(F32(xs)) * float(s) / float(F32(ys))) for s in wsv]
    return _i64([m for m, _ in ms]), _i64([s for _, s in ms])


def _pad_offset(x, xz, KH, KW, strides, dilations, padding, pads):
    """x - zp as int64, padded with zeros (padding never contributes)."""
    OH, pt, pb = window_out(x.shape[1], KH, strides[0], dilations[0], padding, pads[0], pads[1])
    OW, pl, pr = window_out(x.shape[2], KW, strides[1], dilations[1], padding, pads[2], pads[3])
    xo = _i64(x) - xz
    return np.pad(xo, ((0, 0), (pt, pb), (pl, pr), (0, 0))), OH, OW


def _tap(xp, kh, kw, dh, dw, sh, sw, OH, OW):
    h0, w0 = kh * dh, kw * dw
    return xp[:, h0:h0 + (OH - 1) * sh + 1:sh, w0:w0 + (OW - 1) * sw + 1:sw, :]


def conv2d(x, x_q, w, w_scales, bias, y_q, strides=(1, 1), dilations=(1, 1), padding=0,
           pads=(0, 0, 0, 0), groups=1, activation=0, requant="fixed"):
    """TFLite ConvPerChannel: x int8 NHWC, w int8 [Cout,KH,KW,Cin/groups]
    (zero points 0), w_scales one per output channel (or one), bias int32."""
    Cout, KH, KW, Cg = w.shape
    xp, OH, OW = _pad_offset(x, _z(x_q), KH, KW, strides, dilations, padding, pads)
    N = x.shape[0]
    og = Cout // groups
    acc = np.zeros((N, OH, OW, Cout), np.int64)
    wi = _i64(w)
    for kh in range(KH):
        for kw in range(KW):
            t = _tap(xp, kh, kw, dilations[0], dilations[1], strides[0], strides[1], OH, OW)
            for g in range(groups):
                acc[..., g * og:(g + 1) * og] += np.einsum(
                    "nhwc,oc->nhwo", t[..., g * Cg:(g + 1) * Cg], wi[g * og:(g + 1) * og, kh, kw, :])
    if bias is not None:
        acc += _i64(bias)
    return _conv_stage(wrap32(acc), x_q, w_scales, y_q, Cout, activation, requant)


def depthwise_conv2d(x, x_q, w, w_scales, bias, y_q, strides=(1, 1), dilations=(1, 1), padding=0,
                     pads=(0, 0, 0, 0), depth_multiplier=1, activation=0, requant="fixed"):
    """TFLite DepthwiseConvPerChannel: w int8 [1,KH,KW,C*M], scales per output
    channel (dim 3); output channel c*M+m reads input channel c."""
    _, KH, KW, CM = w.shape
    xp, OH, OW = _pad_offset(x, _z(x_q), KH, KW, strides, dilations, padding, pads)
    xp = np.repeat(xp, depth_multiplier, axis=3)
    acc = np.zeros((x.shape[0], OH, OW, CM), np.int64)
    wi = _i64(w)
    for kh in range(KH):
        for kw in range(KW):
            acc += _tap(xp, kh, kw, dilations[0], dilations[1], strides[0], strides[1], OH, OW) * wi[0, kh, kw]
    if bias is not None:
        acc += _i64(bias)
    return _conv_stage(wrap32(acc), x_q, w_scales, y_q, CM, activation, requant)


def transpose_conv2d(x, x_q, w, w_scales, bias, y_q, strides=(1, 1), dilations=(1, 1), padding=0,
                     pads=(0, 0, 0, 0), output_padding=(0, 0), activation=0, requant="fixed"):
    """TFLite's int8 TRANSPOSE_CONV (reference_integer_ops::TransposeConv):
    w int8 [Cout,KH,KW,Cin] (zero points 0), w_scales one per output channel
    (or one), bias int32 [Cout] or None. A scatter as TFLite writes it: each
    input pixel's (x - zp_x) times each tap's weights is added, in int32, to
    the output pixel the tap lands on (outside the output: dropped); then the
    bias and the per-channel output stage of Conv2D."""
    N, H, W, Cin = x.shape
    Cout, KH, KW, _ = w.shape
    (sh, sw), (dh, dw) = strides, dilations
    OH, pt = transpose_conv_out(H, KH, sh, dh, padding, pads[0], pads[1], output_padding[0])
    OW, pl = transpose_conv_out(W, KW, sw, dw, padding, pads[2], pads[3], output_padding[1])
    xo = _i64(x) - _z(x_q)
    wi = _i64(w)
    acc = np.zeros((N, OH, OW, Cout), np.int64)
    for iy in range(H):
        for ix in range(W):
            for kh in range(KH):
                oy = iy * sh - pt + kh * dh
                if not 0 <= oy < OH:
                    continue
                for kw in range(KW):
                    ox = ix * sw - pl + kw * dw
                    if 0 <= ox < OW:
                        acc[:, oy, ox, :] = wrap32(acc[:, oy, ox, :] + xo[:, iy, ix, :] @ wi[:, kh, kw, :].T)
    if bias is not None:
        acc = wrap32(acc + _i64(bias))
    return _conv_stage(acc, x_q, w_scales, y_q, Cout, activation, requant)


# ----------------------------------------------------------------------------
# Add, Sub, Mul (numpy broadcasting)

def add_params(a_q, b_q, y_q):
    """The left_shift = 20 scheme of TFLite's add.cc / sub.cc Prepare."""
    twice = 2.0 * float(max(F32(a_q[0]), F32(b_q[0])))  # 2 * float, exact
    m1 = quantize_multiplier(float(F32(a_q[0])) / twice)
    m2 = quantize_multiplier(float(F32(b_q[0])) / twice)
    mo = quantize_multiplier(twice / float(F32(F32(1 << 20) * F32(y_q[0]))))
    return m1, m2, mo


def _add_sub(a, a_q, b, b_q, y_q, activation, sign):
    (m1, s1), (m2, s2), (mo, so) = add_params(a_q, b_q, y_q)
    a, b = np.broadcast_arrays(_i64(a), _i64(b))
    v1 = rdbpot(srdhm((a - a_q[1]) * (1 << 20), m1), -s1)
    v2 = rdbpot(srdhm((b - b_q[1]) * (1 << 20), m2), -s2)
    raw = wrap32(v1 + sign * v2)
    lo, hi = act_range(activation, _s(y_q), _z(y_q))
    return _clamp(mbqm(raw, mo, so) + y_q[1], lo, hi).astype(np.int8)


def add(a, a_q, b, b_q, y_q, activation=0):
    return _add_sub(a, a_q, b, b_q, y_q, activation, 1)


def sub(a, a_q, b, b_q, y_q, activation=0):
    return _add_sub(a, a_q, b, b_q, y_q, activation, -1)


def mul(a, a_q, b, b_q, y_q, activation=0, requant="fixed"):
    """TFLite's int8 Mul; requant="float32": the float32 output stage of
    models tinyinfer quantizes, the exact product (a - zp_a)(b - zp_b) times
    s_a s_b / s_y (in double, rounded to float32) in float32, rounded half
    to even."""
    a, b = np.broadcast_arrays(_i64(a), _i64(b))
    lo, hi = act_range(activation, _s(y_q), _z(y_q))
    prod = (a - a_q[1]) * (b - b_q[1])
    if requant == "float32":
        s = F32(float(F32(a_q[0])) * float(F32(b_q[0])) / float(F32(y_q[0])))
        f = prod.astype(F32) * s
        return _clamp(np.rint(np.clip(f, -32768, 32767)).astype(np.int64) + y_q[1], lo, hi).astype(np.int8)
    assert requant == "fixed", requant
    real = F32(F32(F32(a_q[0]) * F32(b_q[0])) / F32(y_q[0]))  # float arithmetic, as mul.cc
    m, s = quantize_multiplier(float(real))
    return _clamp(mbqm(prod, m, s) + y_q[1], lo, hi).astype(np.int8)


def prelu(x, x_q, alpha, alpha_q, y_q):
    """TFLite int8 PRelu (prelu.cc, reference_ops::BroadcastPrelu4DSlow): with x' = x - zp_x and
    a' = alpha - zp_alpha, zp_y + MBQM(x', s_x / s_y) for x' >= 0, else zp_y + MBQM(x' a', s_x s_a / s_y),
    clamped to int8; the multipliers from float arithmetic on the float scales. alpha broadcasts to x."""
    m1, s1 = quantize_multiplier(float(F32(F32(x_q[0]) / F32(y_q[0]))))
    m2, s2 = quantize_multiplier(float(F32(F32(F32(x_q[0]) * F32(alpha_q[0])) / F32(y_q[0]))))
    xv = _i64(x) - x_q[1]
    av = np.broadcast_to(_i64(alpha) - alpha_q[1], xv.shape)
    v = np.where(xv >= 0, mbqm(xv, m1, s1), mbqm(xv * av, m2, s2))
    return _clamp(v + y_q[1], -128, 127).astype(np.int8)


# ----------------------------------------------------------------------------
# Pooling and Mean

def _pool_windows(x, filter, strides, padding, pads):
    KH, KW = filter
    OH, pt, _ = window_out(x.shape[1], KH, strides[0], 1, padding, pads[0], pads[1])
    OW, pl, _ = window_out(x.shape[2], KW, strides[1], 1, padding, pads[2], pads[3])
    for oy in range(OH):
        y0 = oy * strides[0] - pt
        ys = slice(max(y0, 0), min(y0 + KH, x.shape[1]))
        for ox in range(OW):
            x0 = ox * strides[1] - pl
            yield oy, ox, x[:, ys, max(x0, 0):min(x0 + KW, x.shape[2]), :]


def average_pool2d(x, y_q, filter=(1, 1), strides=(1, 1), padding=0, pads=(0, 0, 0, 0), activation=0):
    """Sum of raw int8 values over the real cells, divided rounding half away
    from zero (input and output share their quantization)."""
    lo, hi = act_range(activation, _s(y_q), _z(y_q))
    out = []
    for oy, ox, win in _pool_windows(_i64(x), filter, strides, padding, pads):
        n = win.shape[1] * win.shape[2]
        s = win.sum(axis=(1, 2))
        out.append(np.where(s > 0, _tdiv(s + n // 2, n), -_tdiv(-(s - n // 2), n)))
    OH = max(o[0] for o in _pool_windows(x, filter, strides, padding, pads)) + 1
    r = np.stack(out, axis=1).reshape(x.shape[0], OH, -1, x.shape[3])
    return _clamp(r, lo, hi).astype(np.int8)


def max_pool2d(x, y_q, filter=(1, 1), strides=(1, 1), padding=0, pads=(0, 0, 0, 0), activation=0):
    lo, hi = act_range(activation, _s(y_q), _z(y_q))
    out = []
    OH = 0
    for oy, ox, win in _pool_windows(_i64(x), filter, strides, padding, pads):
        out.append(win.max(axis=(1, 2)))
        OH = oy + 1
    r = np.stack(out, axis=1).reshape(x.shape[0], OH, -1, x.shape[3])
    return _clamp(r, lo, hi).astype(np.int8)


def mean(x, x_q, y_q, axes, keep_dims=0):
    """TFLite reference QuantizedMeanOrSum: int32 sum, the 1/n folded into the
    multiplier of in_scale / out_scale, then MultiplyByQuantizedMultiplier."""
    axes = tuple(sorted(a % x.ndim for a in axes))
    n = int(np.prod([x.shape[a] for a in axes])) if axes else 1
    m, s = quantize_multiplier(float(F32(x_q[0])) / float(F32(y_q[0])))
    shift = min(n.bit_length() - 1, 32)
    shift = min(shift, 31 + s)
    m = (m << shift) // n
    s = s - shift
    total = wrap32(_i64(x).sum(axis=axes, keepdims=bool(keep_dims)) if axes else _i64(x))
    v = mbqm(wrap32(total - x_q[1] * n), m, s) + y_q[1]
    return _clamp(v, -128, 127).astype(np.int8)


def reduce_max(x, x_q, y_q, axes, keep_dims=0):
    """TFLite REDUCE_MAX on int8: the largest raw value (exact with the input's
    parameters), else requantized to the output's (requantize above)."""
    axes = tuple(sorted(a % x.ndim for a in axes))
    m = np.max(x, axis=axes, keepdims=bool(keep_dims)) if axes else np.array(x)
    m = np.asarray(m, dtype=np.int8)
    if float(F32(x_q[0])) == float(F32(y_q[0])) and int(x_q[1]) == int(y_q[1]):
        return m
    return requantize(m, x_q, y_q)


# ----------------------------------------------------------------------------
# Softmax (gemmlowp fixed point, as TFLite's reference int8 softmax)

def _exp_on_interval(a):
    """exp(x) for x in [-1/4, 0), Q0.31 in and out."""
    const_term = 1895147668
    one_third = 715827883
    x = wrap32(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_4 = rdbpot(x4, 2)
    poly = rdbpot(wrap32(srdhm(wrap32(x4_4 + x3), one_third) + x2), 1)
    return wrap32(const_term + srdhm(const_term, wrap32(x + poly)))


def exp_on_negative_values_q5(a):
    """gemmlowp exp_on_negative_values for a Q5.26 input -> Q0.31."""
    a = _i64(a)
    frac_bits = 26
    quarter = 1 << (frac_bits - 2)
    amq = wrap32((a & (quarter - 1)) - quarter)
    result = _exp_on_interval(sat_shl(amq, 5))
    remainder = wrap32(amq - a)
    for exponent, mult in ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
                           (2, 39332535), (3, 720401), (4, 242)):
        bit = 1 << (frac_bits + exponent)
        result = np.where((remainder & bit) != 0, srdhm(result, mult), result)
    return np.where(a == 0, I32_MAX, result)


def one_over_one_plus_x_for_x_in_0_1(a):
    a = _i64(a)
    s = a + I32_MAX
    half_den = _tdiv(s + np.where(s >= 0, 1, -1), 2)  # RoundingHalfSum
    x = wrap32(1515870810 + srdhm(half_den, -1010580540))
    for _ in range(3):
        hdx = srdhm(half_den, x)
        one_minus = wrap32((1 << 29) - hdx)  # F2::One()
        x = wrap32(x + sat_shl(srdhm(x, one_minus), 2))
    return sat_shl(x, 1)


def softmax_params(x_scale, beta=1.0):
    """(multiplier, left_shift, diff_min) of TFLite's reference int8 softmax."""
    real = min(float(F32(beta)) * float(F32(x_scale)) * float(1 << 26), float((1 << 31) - 1))
    if not real > 1.0:
        raise ValueError("softmax: beta * input scale is too small")
    m, shift = quantize_multiplier(real)
    radius = math.floor(1.0 * ((1 << 5) - 1) * (1 << 26) / (1 << shift))
    return m, shift, -radius


def softmax(x, x_q, beta=1.0, axis=-1):
    """int8 softmax, output scale 1/256 and zero point -128."""
    m, shift, diff_min = softmax_params(x_q[0], beta)
    xm = np.moveaxis(_i64(x), axis, -1)
    flat = xm.reshape(-1, xm.shape[-1])
    out = np.empty_like(flat)
    for i, row in enumerate(flat):
        diff = row - row.max()
        ok = diff >= diff_min
        resc = srdhm(wrap32(diff * (1 << shift)), m)
        e = exp_on_negative_values_q5(resc)
        total = 0
        for v, k in zip(rdbpot(e, 12), ok):
            if k:
                total = int(wrap32(total + int(v)))
        hp1 = clz32(total)
        nbou = 12 - hp1
        ssm1 = int(wrap32(((total << hp1) & 0xFFFFFFFF) - (1 << 31)))
        scale = one_over_one_plus_x_for_x_in_0_1(ssm1)
        exponent = nbou + 31 - 8  # TFLite checks <= 31 (a sum of exps below 2^28); continued here
        o = rdbpot(srdhm(scale, e), exponent) - 128
        out[i] = np.where(ok, np.clip(o, -128, 127), -128)
    return np.moveaxis(out.reshape(xm.shape), -1, axis).astype(np.int8)


# ----------------------------------------------------------------------------
# Elementwise activations

def relu_x(x, x_q, y_q, lo_real, hi_real=None):
    """TFLite QuantizedReluX: requantize in -> out, clamp to [lo, hi] quantized."""
    m, s = quantize_multiplier(float(F32(F32(x_q[0]) / F32(y_q[0]))))
    lo = max(-128, y_q[1] + int(round_half_away(F32(lo_real) / F32(y_q[0]))))
    hi = 127 if hi_real is None else min(127, y_q[1] + int(round_half_away(F32(hi_real) / F32(y_q[0]))))
    v = y_q[1] + mbqm(_i64(x) - x_q[1], m, s)
    return np.minimum(np.maximum(v, lo), hi).astype(np.int8)


def relu(x, x_q, y_q):
    return relu_x(x, x_q, y_q, 0.0)


def relu6(x, x_q, y_q):
    return relu_x(x, x_q, y_q, 0.0, 6.0)


def leaky_relu(x, x_q, y_q, alpha=0.2):
    ma, sa = quantize_multiplier(float(F32(F32(F32(x_q[0]) * F32(alpha)) / F32(y_q[0]))))
    mi, si = quantize_multiplier(float(F32(F32(x_q[0]) / F32(y_q[0]))))
    v = _i64(x) - x_q[1]
    neg = mbqm(v, abs(ma), sa)
    neg = -neg if ma < 0 else neg
    out = y_q[1] + np.where(v >= 0, mbqm(v, mi, si), neg)
    return _clamp(out, -128, 127).astype(np.int8)


def _libm():
    path = ctypes.util.find_library("m") or "libm.so.6"
    lib = ctypes.CDLL(path)
    for name in ("expf", "tanhf"):
        f = getattr(lib, name)
        f.restype = ctypes.c_float
        f.argtypes = [ctypes.c_float]
    return lib


_LIBM = None


def _lut(x_q, y_q, transform):
    """TFLite LUTPopulate<int8_t>: dequantize in float32, transform, roundf(v / out_scale) + zp."""
    inv = F32(F32(1.0) / F32(y_q[0]))
    table = np.empty(256, np.int64)
    for i, val in enumerate(range(-128, 128)):
        deq = F32(F32(x_q[0]) * F32(val - x_q[1]))
        t = F32(transform(deq))
        r = round_half_away(F32(t * inv))
        q = int(np.trunc(F32(r + F32(y_q[1]))))
        table[i] = min(max(q, -128), 127)
    return table


def logistic(x, x_q, y_q):
    """TFLite's int8 Logistic (a 256-entry table of 1 / (1 + expf(-v)) in
    float32, with the C library's expf)."""
    global _LIBM
    _LIBM = _LIBM or _libm()
    table = _lut(x_q, y_q, lambda v: F32(1.0) / F32(F32(1.0) + F32(_LIBM.expf(float(-v)))))
    return table[_i64(x) + 128].astype(np.int8)


def tanh(x, x_q, y_q):
    """TFLite's int8 Tanh (a 256-entry table of tanhf)."""
    global _LIBM
    _LIBM = _LIBM or _libm()
    table = _lut(x_q, y_q, lambda v: F32(_LIBM.tanhf(float(v))))
    return table[_i64(x) + 128].astype(np.int8)


def hard_swish_params(x_q, y_q):
    hires = F32(F32(1.0 / 128.0) * F32(x_q[0]))
    out_mult = F32(hires / F32(y_q[0]))
    relu_mult = F32(hires / F32(F32(3.0) / F32(32768.0)))
    mo, eo = quantize_multiplier(float(out_mult))
    mr, er = quantize_multiplier(float(relu_mult))

    def down(m):  # DownScaleInt32ToInt16Multiplier
        return 32767 if m >= I32_MAX - (1 << 15) else (m + (1 << 15)) >> 16

    if eo > 0:
        raise ValueError("hard_swish: output multiplier >= 1")
    return down(mo), eo, down(mr), er


def hard_swish(x, x_q, y_q):
    """TFLite reference_ops::HardSwish (16-bit fixed point)."""
    mo16, eo, mr16, er = hard_swish_params(x_q, y_q)
    out = []
    for v in np.ravel(_i64(x)):
        iv = int(wrap16(v - x_q[1]))
        hires = int(wrap16(iv * 128))
        pre_out = int(srdhm16(hires, mo16))
        r = hires
        if er > 0:
            r = max(min(r * (1 << (er - 1)), 32767), -32768)
        r = int(srdhm16(r, mr16))
        if er > 0:
            r = max(min(r * 2, 32767), -32768)
        if er < 0:
            r = int(rdbpot16(r, -er))
        r = (r + (1 << 15)) >> 1
        # SaturatingDoublingHighMul (truncating)
        if r == -32768 and pre_out == -32768:
            p = 32767
        else:
            p = int(wrap16(int(_tdiv(r * pre_out, 1 << 15))))
        o = int(rdbpot16(p, -eo))
        o = int(wrap16(o + y_q[1]))
        out.append(min(max(o, -128), 127))
    return np.asarray(out, np.int8).reshape(np.shape(x))


# ----------------------------------------------------------------------------
# ResizeBilinear, Maximum, Minimum

def _resize_coords_10(o, in_size, scale10, half_pixel_centers):
    """TFLite's integer ComputeInterpolationValues for output coordinates o:
    (scaled value in 1/1024, lower, upper), C int32 division (toward zero)."""
    v = o * scale10 + (scale10 // 2 - 512 if half_pixel_centers else 0)
    # TFLite does not bound lower above: for large upsampling ratios (8 -> 129 rows) its rounded-up scale
    # reaches in_size on the last outputs, a read past the row; bounded (tinyinfer's choice) it gives the edge.
    lower = np.minimum(np.maximum(_tdiv(v, 1024), 0), in_size - 1)
    upper = np.minimum(_tdiv(v + 1023, 1024), in_size - 1)
    return v, lower, upper


def resize_bilinear(x, size, align_corners=False, half_pixel_centers=False):
    """TFLite reference_ops::ResizeBilinearInteger (the int8 overload of
    resize_bilinear.h): 10-bit scales rounded half up, the four corners
    weighted by (1024 - dy)(1024 - dx), ..., summed in int64 and rounded
    half away from zero (+-2^19) by a C division by 2^20. The output has the
    input's quantization (the raw values are interpolated)."""
    x = _i64(x)
    _, h, w, _ = x.shape
    oh, ow = size

    def scale10(i, o):
        if align_corners and o > 1:
            return (1024 * (i - 1) + (o - 1) // 2) // (o - 1)
        return (1024 * i + o // 2) // o

    vy, y0, y1 = _resize_coords_10(np.arange(oh, dtype=np.int64), h, scale10(h, oh), half_pixel_centers)
    vx, x0, x1 = _resize_coords_10(np.arange(ow, dtype=np.int64), w, scale10(w, ow), half_pixel_centers)
    dy = (vy - 1024 * y0)[None, :, None, None]
    dx = (vx - 1024 * x0)[None, None, :, None]
    a = x[:, y0][:, :, x0]
    b = x[:, y1][:, :, x0]
    c = x[:, y0][:, :, x1]
    d = x[:, y1][:, :, x1]
    s = a * (1024 - dy) * (1024 - dx) + b * dy * (1024 - dx) + c * (1024 - dy) * dx + d * dy * dx
    r = _tdiv(s + np.where(s > 0, 1 << 19, -(1 << 19)), 1 << 20)
    return r.astype(np.int8)


def maximum(a, b):
    """TFLite's int8 MAXIMUM: the raw values (inputs and output share their parameters), numpy broadcasting."""
    return np.maximum(np.asarray(a, np.int8), np.asarray(b, np.int8))


def minimum(a, b):
    return np.minimum(np.asarray(a, np.int8), np.asarray(b, np.int8))


# ----------------------------------------------------------------------------
# Concat

def concat(xs, x_qs, y_q, axis=0):
    """Inputs whose parameters differ from the output's are requantized as
    TFLite's ConcatenationWithScaling: round(q * (s_in / s_out) - zp_in * ...) + zp_out,
    in float32."""
    parts = []
    inv = F32(F32(1.0) / F32(y_q[0]))
    for x, q in zip(xs, x_qs):
        if F32(q[0]) == F32(y_q[0]) and q[1] == y_q[1]:
            parts.append(_i64(x))
            continue
        scale = F32(F32(q[0]) * inv)
        bias = F32(F32(-q[1]) * scale)
        v = round_half_away(F32(np.asarray(x, F32) * scale) + bias).astype(np.int64) + y_q[1]
        parts.append(_clamp(v, -128, 127))
    return np.concatenate(parts, axis=axis).astype(np.int8)


# The integer reference of each op that has one (test_references.py checks
# that the names are ops and that tests use the functions).
REFERENCE_INT8 = {
    "Quantize": quantize, "Dequantize": dequantize,
    "FullyConnected": fully_connected, "Conv2D": conv2d, "DepthwiseConv2D": depthwise_conv2d,
    "Add": add, "Sub": sub, "Mul": mul, "AveragePool2D": average_pool2d, "MaxPool2D": max_pool2d, "Mean": mean,
    "Softmax": softmax, "Relu": relu, "Relu6": relu6, "LeakyRelu": leaky_relu, "Logistic": logistic, "Tanh": tanh,
    "HardSwish": hard_swish, "Concat": concat, "ReduceMax": reduce_max, "PRelu": prelu,
    "ResizeBilinear": resize_bilinear, "Maximum": maximum, "Minimum": minimum,
}
