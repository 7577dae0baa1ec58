"""Independent numpy reference implementation of the tinyinfer ops (docs/ops.md).

Plain, slow, obviously-correct code: float64 internally, float32 out for the
compute ops; data-movement ops keep the input dtype. Layout is NHWC.
"""
import math

import numpy as np

F32 = np.float32


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _out(y):
    return _f64(y).astype(np.float32)


def _act(y, activation=0):
    """Fused activation: 0 none, 1 relu, 2 relu6, 3 relu_n1_to_1 (NaN passes through)."""
    lo, hi = {0: (-np.inf, np.inf), 1: (0.0, np.inf), 2: (0.0, 6.0), 3: (-1.0, 1.0)}[activation]
    return np.clip(y, lo, hi)


def _axis(axis, rank):
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank:
        raise ValueError("axis %d out of range for rank %d" % (axis, rank))
    return a


def window_out(size, k, stride=1, dilation=1, padding=0, before=0, after=0):
    """(out, pad_before, pad_after) for one spatial dim: 0 VALID, 1 SAME (TF), 2 EXPLICIT."""
    eff = (k - 1) * dilation + 1
    if padding == 0:
        before, after = 0, 0
    elif padding == 1:
        out = -(-size // stride)
        total = max((out - 1) * stride + eff - size, 0)
        before = total // 2
        after = total - before
    elif padding != 2:
        raise ValueError("unknown padding %r" % (padding,))
    out = (size + before + after - eff) // stride + 1
    if out < 1:
        raise ValueError("empty output")
    return out, before, after


def _windows(x, KH, KW, strides, dilations, padding, pads, fill=0.0):
    """Pad x (NHWC) for a KHxKW window; returns (padded x, OH, OW)."""
    OH, pt, pb = window_out(x.shape[1], KH, strides[0], dilations[0], padding, pads[0], pads[1])
    OW, pl, pr = window_out(x.shape[2], KW, strides[1], dilations[1], padding, pads[2], pads[3])
    return np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=fill), OH, OW


def _taps(xp, kh, kw, dh, dw, sh, sw, OH, OW):
    """xp[:, oh*sh + kh*dh, ow*sw + kw*dw, :] for all oh, ow -> [N,OH,OW,C]."""
    h0, w0 = kh * dh, kw * dw
    return xp[:, h0:h0 + (OH - 1) * sh + 1:sh, w0:w0 + (OW - 1) * sw + 1:sw, :]


# ----------------------------------------------------------------------------
# Linear algebra

def fully_connected(x, w, bias=None, activation=0):
    """y[..., n] = sum_k x[..., k] * w[n, k] + bias[n]; leading dims kept."""
    x, w = _f64(x), _f64(w)
    assert x.shape[-1] == w.shape[1]
    y = np.einsum("...k,nk->...n", x, w)
    if bias is not None:
        y = y + _f64(bias)
    return _out(_act(y, activation))


def matmul(a, b, transpose_a=0, transpose_b=0):
    """Batched a @ b with numpy broadcasting of the batch dims (last two optionally swapped)."""
    a, b = _f64(a), _f64(b)
    assert a.ndim >= 2 and b.ndim >= 2
    if transpose_a:
        a = np.swapaxes(a, -1, -2)
    if transpose_b:
        b = np.swapaxes(b, -1, -2)
    assert a.shape[-1] == b.shape[-2]
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = np.broadcast_to(a, batch + a.shape[-2:])
    b = np.broadcast_to(b, batch + b.shape[-2:])
    return _out(np.einsum("...mk,...kn->...mn", a, b))


# ----------------------------------------------------------------------------
# Convolution and pooling

def conv2d(x, w, bias=None, strides=(1, 1), dilations=(1, 1), padding=0, pads=(0, 0, 0, 0),
           groups=1, activation=0):
    """Grouped 2-D convolution (cross-correlation), x NHWC, w [Cout,KH,KW,Cin/groups]."""
    x, w = _f64(x), _f64(w)
    N, H, W, Cin = x.shape
    Cout, KH, KW, Cg = w.shape
    assert Cin % groups == 0 and Cout % groups == 0 and Cg == Cin // groups
    (sh, sw), (dh, dw) = strides, dilations
    xp, OH, OW = _windows(x, KH, KW, strides, dilations, padding, pads)
    y = np.zeros((N, OH, OW, Cout))
    og = Cout // groups
    for g in range(groups):
        xs = xp[..., g * Cg:(g + 1) * Cg]
        ws = w[g * og:(g + 1) * og]
        for kh in range(KH):
            for kw in range(KW):
                patch = _taps(xs, kh, kw, dh, dw, sh, sw, OH, OW)
                y[..., g * og:(g + 1) * og] += patch @ ws[:, kh, kw, :].T
    if bias is not None:
        y += _f64(bias)
    return _out(_act(y, activation))


def depthwise_conv2d(x, w, bias=None, strides=(1, 1), dilations=(1, 1), padding=0,
                     pads=(0, 0, 0, 0), depth_multiplier=1, activation=0):
    """Depthwise conv, w [1,KH,KW,C*M]; output channel c*M+m reads input channel c."""
    x, w = _f64(x), _f64(w)
    N, H, W, C = x.shape
    M = depth_multiplier
    one, KH, KW, CM = w.shape
    assert one == 1 and CM == C * M
    (sh, sw), (dh, dw) = strides, dilations
    xp, OH, OW = _windows(x, KH, KW, strides, dilations, padding, pads)
    y = np.zeros((N, OH, OW, C * M))
    for kh in range(KH):
        for kw in range(KW):
            patch = _taps(xp, kh, kw, dh, dw, sh, sw, OH, OW)
            y += np.repeat(patch, M, axis=-1) * w[0, kh, kw, :]  # channel j reads j // M
    if bias is not None:
        y += _f64(bias)
    return _out(_act(y, activation))


def transpose_conv_out(size, k, stride=1, dilation=1, padding=0, before=0, after=0, output_padding=0):
    """(out, pad_before) of TransposeConv2D along one spatial dim."""
    eff = (k - 1) * dilation + 1
    if padding == 0:
        return (size - 1) * stride + eff + output_padding, 0
    if padding == 1:
        total = max((size - 1) * stride + eff - size * stride, 0)
        return size * stride + output_padding, total // 2
    if padding == 2:
        return (size - 1) * stride + eff - before - after + output_padding, before
    raise ValueError("unknown padding %r" % (padding,))


def transpose_conv2d(x, w, bias=None, strides=(1, 1), dilations=(1, 1), padding=0,
                     pads=(0, 0, 0, 0), output_padding=(0, 0), activation=0):
    """Gradient of conv2d: y[n, ih*s-pt+kh*d, iw*s-pl+kw*d, co] += x[n,ih,iw,ci]*w[co,kh,kw,ci]."""
    x, w = _f64(x), _f64(w)
    N, H, W, Cin = x.shape
    Cout, KH, KW, Ci = w.shape
    assert Ci == Cin
    (sh, sw), (dh, dw) = strides, dilations
    OH, pt = transpose_conv_out(H, KH, sh, dh, padding, pads[0], pads[1], output_padding[0])
    OW, pl = transpose_conv_out(W, KW, sw, dw, padding, pads[2], pads[3], output_padding[1])
    assert OH >= 1 and OW >= 1
    y = np.zeros((N, OH, OW, Cout))
    for ih in range(H):
        for iw in range(W):
            for kh in range(KH):
                for kw in range(KW):
                    oh = ih * sh - pt + kh * dh
                    ow = iw * sw - pl + kw * dw
                    if 0 <= oh < OH and 0 <= ow < OW:
                        y[:, oh, ow, :] += x[:, ih, iw, :] @ w[:, kh, kw, :].T
    if bias is not None:
        y += _f64(bias)
    return _out(_act(y, activation))


def _pool_taps(x, filter, strides, padding, pads, fill):
    """All KH*KW window taps stacked on a new leading axis: [KH*KW, N, OH, OW, C]."""
    xp, OH, OW = _windows(x, filter[0], filter[1], strides, (1, 1), padding, pads, fill)
    return np.stack([_taps(xp, kh, kw, 1, 1, strides[0], strides[1], OH, OW)
                     for kh in range(filter[0]) for kw in range(filter[1])])


def max_pool2d(x, filter=(1, 1), strides=(1, 1), padding=0, pads=(0, 0, 0, 0), activation=0):
    """Max over each window; padding cells are -inf so they are never the max."""
    y = _pool_taps(_f64(x), filter, strides, padding, pads, -np.inf).max(axis=0)
    return _out(_act(y, activation))


def average_pool2d(x, filter=(1, 1), strides=(1, 1), padding=0, pads=(0, 0, 0, 0),
                   count_include_pad=0, activation=0):
    """Window sum / divisor: real input cells in the window (count_include_pad=0) or KH*KW (1)."""
    x = _f64(x)
    total = _pool_taps(x, filter, strides, padding, pads, 0.0).sum(axis=0)
    count = _pool_taps(np.ones_like(x), filter, strides, padding, pads, 0.0).sum(axis=0)
    y = total / (filter[0] * filter[1] if count_include_pad else count)
    return _out(_act(y, activation))


def mean(x, axes=(), keep_dims=0):
    """Mean over axes (negative from end, duplicates refused)."""
    x = _f64(x)
    ax = [_axis(a, x.ndim) for a in axes]
    if len(set(ax)) != len(ax):
        raise ValueError("duplicate axes")
    return _out(np.mean(x, axis=tuple(ax), keepdims=bool(keep_dims)))


def reduce_max(x, axes=(), keep_dims=0):
    """Largest element over axes (negative from end, duplicates refused; none:
    nothing reduced). A NaN in a reduced set gives NaN."""
    x = np.asarray(x, dtype=np.float32)
    ax = [_axis(a, x.ndim) for a in axes]
    if len(set(ax)) != len(ax):
        raise ValueError("duplicate axes")
    if not ax:
        return x.copy()
    y = np.max(x, axis=tuple(ax), keepdims=bool(keep_dims))
    return np.asarray(y, dtype=np.float32)


# ----------------------------------------------------------------------------
# Elementwise

def _binary(a, b, f, activation=0):
    with np.errstate(all="ignore"):
        return _out(_act(f(_f64(a), _f64(b)), activation))


def add(a, b, activation=0):
    """a + b, numpy broadcasting."""
    return _binary(a, b, np.add, activation)


def sub(a, b, activation=0):
    """a - b, numpy broadcasting."""
    return _binary(a, b, np.subtract, activation)


def mul(a, b, activation=0):
    """a * b, numpy broadcasting."""
    return _binary(a, b, np.multiply, activation)


def div(a, b, activation=0):
    """a / b (IEEE: x/0 = +-inf, 0/0 = NaN), numpy broadcasting."""
    return _binary(a, b, np.divide, activation)


def maximum(a, b):
    """Elementwise max (NaN propagates), numpy broadcasting."""
    return _binary(a, b, np.maximum)


def minimum(a, b):
    """Elementwise min (NaN propagates), numpy broadcasting."""
    return _binary(a, b, np.minimum)


def _unary(x, f):
    with np.errstate(all="ignore"):
        return _out(f(_f64(x)))


def relu(x):
    """max(x, 0)."""
    return _unary(x, lambda v: np.maximum(v, 0.0))


def relu6(x):
    """min(max(x, 0), 6)."""
    return _unary(x, lambda v: np.clip(v, 0.0, 6.0))


def leaky_relu(x, alpha=0.2):
    """x if x >= 0 else alpha * x."""
    return _unary(x, lambda v: np.where(v >= 0, v, alpha * v))


def prelu(x, slope):
    """x if x >= 0 else slope * x; slope broadcast to x's shape."""
    s = np.broadcast_to(_f64(slope), np.shape(x))  # raises if slope would enlarge x
    return _unary(x, lambda v: np.where(v >= 0, v, s * v))


def hard_swish(x):
    """x * relu6(x + 3) / 6."""
    return _unary(x, lambda v: v * np.clip(v + 3.0, 0.0, 6.0) / 6.0)


def logistic(x):
    """1 / (1 + exp(-x))."""
    return _unary(x, lambda v: 1.0 / (1.0 + np.exp(-v)))


def tanh(x):
    """tanh(x)."""
    return _unary(x, np.tanh)


_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu(x, approximate=0):
    """0: 0.5 x (1 + erf(x/sqrt2)); 1: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    if approximate:
        c = math.sqrt(2.0 / math.pi)
        return _unary(x, lambda v: 0.5 * v * (1.0 + np.tanh(c * (v + 0.044715 * v ** 3))))
    return _unary(x, lambda v: 0.5 * v * (1.0 + _erf(v / math.sqrt(2.0))))


def exp(x):
    """e ** x."""
    return _unary(x, np.exp)


def log(x):
    """Natural log (NaN for x < 0, -inf for 0)."""
    return _unary(x, np.log)


def sqrt(x):
    """Square root (NaN for x < 0)."""
    return _unary(x, np.sqrt)


def rsqrt(x):
    """1 / sqrt(x)."""
    return _unary(x, lambda v: 1.0 / np.sqrt(v))


# ----------------------------------------------------------------------------
# Normalization

def softmax(x, axis=-1, beta=1.0):
    """exp(beta x) / sum exp(beta x) along axis (max-subtracted)."""
    z = beta * _f64(x)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return _out(e / e.sum(axis=axis, keepdims=True))


def log_softmax(x, axis=-1, beta=1.0):
    """beta x - logsumexp(beta x) along axis."""
    z = beta * _f64(x)
    z = z - z.max(axis=axis, keepdims=True)
    return _out(z - np.log(np.exp(z).sum(axis=axis, keepdims=True)))


def layer_norm(x, gamma, beta=None, axis=-1, epsilon=1e-5):
    """Normalize over dims axis..rank-1 with the population variance, then * gamma + beta."""
    x = _f64(x)
    a = _axis(axis, x.ndim)
    red = tuple(range(a, x.ndim))
    assert np.shape(gamma) == x.shape[a:]
    mu = x.mean(axis=red, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=red, keepdims=True)
    y = (x - mu) / np.sqrt(var + epsilon) * _f64(gamma)
    if beta is not None:
        assert np.shape(beta) == x.shape[a:]
        y = y + _f64(beta)
    return _out(y)


def batch_norm(x, scale, bias, mean, variance, epsilon=1e-5):
    """(x - mean) / sqrt(variance + epsilon) * scale + bias over the last dim."""
    x = _f64(x)
    return _out((x - _f64(mean)) / np.sqrt(_f64(variance) + epsilon) * _f64(scale) + _f64(bias))


# ----------------------------------------------------------------------------
# Data movement (dtype preserved)

def reshape(x, shape):
    """Reshape; at most one -1, inferred."""
    x, shape = np.asarray(x), list(shape)
    if shape.count(-1) > 1 or any(d < 1 and d != -1 for d in shape):
        raise ValueError("bad shape %r" % (shape,))
    if -1 in shape:
        shape[shape.index(-1)] = x.size // -int(np.prod(shape))
    if int(np.prod(shape)) != x.size:
        raise ValueError("size mismatch")
    return x.reshape(shape)


def squeeze(x, axes=None):
    """Drop the given size-1 dims (all size-1 dims if axes is empty/None)."""
    x = np.asarray(x)
    if not axes:
        ax = [i for i, d in enumerate(x.shape) if d == 1]
    else:
        ax = [_axis(a, x.ndim) for a in axes]
        if any(x.shape[a] != 1 for a in ax):
            raise ValueError("squeezing a dim that is not 1")
    return x.reshape([d for i, d in enumerate(x.shape) if i not in ax])


def expand_dims(x, axis=0):
    """Insert a size-1 dim at axis (in [-rank-1, rank])."""
    x = np.asarray(x)
    a = _axis(axis + x.ndim + 1 if axis < 0 else axis, x.ndim + 1)
    return x.reshape(x.shape[:a] + (1,) + x.shape[a:])


def transpose(x, perm):
    """y.shape[i] = x.shape[perm[i]]."""
    x = np.asarray(x)
    assert sorted(perm) == list(range(x.ndim))
    return np.transpose(x, perm)


def concat(xs, axis=0):
    """Concatenate a list of tensors along axis."""
    xs = [np.asarray(v) for v in xs]
    return np.concatenate(xs, axis=_axis(axis, xs[0].ndim))


def split(x, axis=0, sizes=None, num_outputs=None):
    """Split along axis by sizes (one may be -1) or into num_outputs equal parts; returns a list."""
    x = np.asarray(x)
    a = _axis(axis, x.ndim)
    n = x.shape[a]
    if sizes is None:
        if n % num_outputs:
            raise ValueError("dim %d not divisible by %d" % (n, num_outputs))
        sizes = [n // num_outputs] * num_outputs
    sizes = list(sizes)
    if sizes.count(-1) == 1:
        sizes[sizes.index(-1)] = n - sum(sizes) - 1
    if sum(sizes) != n or any(s < 1 for s in sizes):
        raise ValueError("bad split sizes %r" % (sizes,))
    starts = np.cumsum([0] + sizes)
    return [np.take(x, range(starts[i], starts[i + 1]), axis=a) for i in range(len(sizes))]


def slice_(x, begin, size):
    """x[begin : begin + size] per dim; size -1 = to the end, negative begin from the end."""
    x = np.asarray(x)
    idx = []
    for d, b, s in zip(x.shape, begin, size):
        b = b + d if b < 0 else b
        e = d if s == -1 else b + s
        if not (0 <= b < e <= d):
            raise ValueError("slice out of range")
        idx.append(slice(b, e))
    return x[tuple(idx)]


def strided_slice(x, begin, end, strides, begin_mask=0, end_mask=0, shrink_axis_mask=0):
    """TF/TFLite StridedSlice (TFLite StartForAxis/StopForAxis clamping); missing trailing dims are full."""
    x = np.asarray(x)
    lo, hi = -(2 ** 31), 2 ** 31 - 1
    out_shape = []
    for i in range(x.ndim):
        n = x.shape[i]
        if i >= len(begin):
            out_shape.append(n)
            continue
        st = strides[i]
        if st == 0:
            raise ValueError("stride 0")
        clamp = (lambda v: min(max(v, 0), n)) if st > 0 else (lambda v: min(max(v, -1), n - 1))
        start = begin[i]
        if shrink_axis_mask >> i & 1:  # TF: plain index begin[i], masks ignored, stride must be > 0
            start = start + n if start < 0 else start
            if st < 0 or not 0 <= start < n:
                raise ValueError("bad shrink index/stride on dim %d" % i)
            stop = start + 1
        else:
            if begin_mask >> i & 1:
                start = lo if st > 0 else hi
            start = clamp(start + n if start < 0 else start)
            stop = end[i]
            if end_mask >> i & 1:
                stop = hi if st > 0 else lo
            stop = clamp(stop + n if stop < 0 else stop)
        idx = list(range(start, stop, st))  # TFLite loop: i < stop (st > 0), i > stop (st < 0)
        if not idx:
            raise ValueError("empty result on dim %d" % i)
        x = np.take(x, idx, axis=i)
        if not shrink_axis_mask >> i & 1:
            out_shape.append(len(idx))
    return x.reshape(out_shape)


def pad(x, pads, mode=0, value=0.0):
    """Pad with pads=[before0, after0, ...]: 0 constant value, 1 reflect (no edge), 2 symmetric (edge)."""
    x = np.asarray(x)
    assert len(pads) == 2 * x.ndim and min(pads) >= 0 and mode in (0, 1, 2)
    if mode == 0:
        y = np.full([n + pads[2 * i] + pads[2 * i + 1] for i, n in enumerate(x.shape)], value, dtype=x.dtype)
        y[tuple(slice(pads[2 * i], pads[2 * i] + n) for i, n in enumerate(x.shape))] = x
        return y
    for i, n in enumerate(x.shape):
        b, a = pads[2 * i], pads[2 * i + 1]
        if max(b, a) > (n - 1 if mode == 1 else n):
            raise ValueError("mirror pad larger than the dim allows")
        if mode == 1:  # reflect: the edge cell is not repeated
            src = [-j if j < 0 else 2 * n - 2 - j if j >= n else j for j in range(-b, n + a)]
        else:  # symmetric: the edge cell is repeated
            src = [-j - 1 if j < 0 else 2 * n - 1 - j if j >= n else j for j in range(-b, n + a)]
        x = np.take(x, src, axis=i)
    return x


def gather(params, indices, axis=0):
    """Output params.shape[:axis] + indices.shape + params.shape[axis+1:]; negative indices from the end."""
    params = np.asarray(params)
    idx = np.asarray(indices).astype(np.int64)
    a = _axis(axis, params.ndim)
    n = params.shape[a]
    if np.any(idx < -n) or np.any(idx >= n):
        raise IndexError("gather index out of range")
    idx = np.where(idx < 0, idx + n, idx)
    return np.take(params, idx, axis=a)


def _resize_scale(in_size, out_size, align_corners):
    if align_corners and out_size > 1:
        return F32(in_size - 1) / F32(out_size - 1)
    return F32(in_size) / F32(out_size)


def _bilinear_coords(out_size, in_size, align_corners, half_pixel_centers):
    """TFLite ComputeInterpolationValues, float32 arithmetic: list of (v, lo, hi)."""
    scale = _resize_scale(in_size, out_size, align_corners)
    res = []
    for o in range(out_size):
        if half_pixel_centers:
            v = (F32(o) + F32(0.5)) * scale - F32(0.5)
        else:
            v = F32(o) * scale
        res.append((float(v), max(int(math.floor(v)), 0), min(int(math.ceil(v)), in_size - 1)))
    return res


def resize_bilinear(x, size, align_corners=0, half_pixel_centers=0):
    """TFLite reference ResizeBilinear (NHWC)."""
    assert not (align_corners and half_pixel_centers)
    x = _f64(x)
    N, H, W, C = x.shape
    OH, OW = size
    ys = _bilinear_coords(OH, H, align_corners, half_pixel_centers)
    xs = _bilinear_coords(OW, W, align_corners, half_pixel_centers)
    y = np.zeros((N, OH, OW, C))
    for oy, (vy, y0, y1) in enumerate(ys):
        fy = vy - y0
        for ox, (vx, x0, x1) in enumerate(xs):
            fx = vx - x0
            y[:, oy, ox, :] = (x[:, y0, x0, :] * (1 - fy) * (1 - fx) + x[:, y1, x0, :] * fy * (1 - fx)
                               + x[:, y0, x1, :] * (1 - fy) * fx + x[:, y1, x1, :] * fy * fx)
    return _out(y)


def _nearest_index(o, in_size, out_size, align_corners, half_pixel_centers):
    """TFLite GetNearestNeighbor, float32 arithmetic."""
    scale = _resize_scale(in_size, out_size, align_corners)
    v = float((F32(o) + F32(0.5 if half_pixel_centers else 0.0)) * scale)
    i = min(math.floor(v + 0.5) if align_corners else math.floor(v), in_size - 1)  # TfLiteRound, v >= 0
    return max(i, 0) if half_pixel_centers else i


def resize_nearest(x, size, align_corners=0, half_pixel_centers=0):
    """TFLite reference ResizeNearestNeighbor (NHWC); any dtype."""
    assert not (align_corners and half_pixel_centers)
    x = np.asarray(x)
    H, W = x.shape[1], x.shape[2]
    OH, OW = size
    iy = [_nearest_index(o, H, OH, align_corners, half_pixel_centers) for o in range(OH)]
    ix = [_nearest_index(o, W, OW, align_corners, half_pixel_centers) for o in range(OW)]
    return x[:, iy][:, :, ix]


def _d2s_channel(bh, bw, c, b, Cp, mode):
    return (bh * b + bw) * Cp + c if mode == 0 else c * b * b + bh * b + bw


def depth_to_space(x, block_size, mode=0):
    """y[n, h*b+bh, w*b+bw, c] = x[n, h, w, (bh*b+bw)*C'+c] (DCR) or x[..., c*b*b+bh*b+bw] (CRD)."""
    x = np.asarray(x)
    N, H, W, C = x.shape
    b = block_size
    assert C % (b * b) == 0
    Cp = C // (b * b)
    y = np.zeros((N, H * b, W * b, Cp), dtype=x.dtype)
    for bh in range(b):
        for bw in range(b):
            for c in range(Cp):
                y[:, bh::b, bw::b, c] = x[:, :, :, _d2s_channel(bh, bw, c, b, Cp, mode)]
    return y


def space_to_depth(x, block_size, mode=0):
    """Inverse of depth_to_space: y[n, h, w, ch(bh,bw,c)] = x[n, h*b+bh, w*b+bw, c]."""
    x = np.asarray(x)
    N, H, W, C = x.shape
    b = block_size
    assert H % b == 0 and W % b == 0
    y = np.zeros((N, H // b, W // b, C * b * b), dtype=x.dtype)
    for bh in range(b):
        for bw in range(b):
            for c in range(C):
                y[:, :, :, _d2s_channel(bh, bw, c, b, C, mode)] = x[:, bh::b, bw::b, c]
    return y

# ----------------------------------------------------------------------------
# Ops on run-time data: comparisons, logic, Where, rounding, Cast, Shape,
# more reductions, Expand, Tile, Range

def _cmp(f, a, b):
    with np.errstate(invalid="ignore"):
        return np.asarray(f(np.asarray(a), np.asarray(b)), dtype=np.bool_)


def equal(a, b):
    """a == b with numpy broadcasting (NaN is unequal to everything); bool."""
    return _cmp(np.equal, a, b)


def not_equal(a, b):
    """a != b (True where either is NaN); bool."""
    return _cmp(np.not_equal, a, b)


def less(a, b):
    """a < b (False with NaN); bool."""
    return _cmp(np.less, a, b)


def less_equal(a, b):
    """a <= b; bool."""
    return _cmp(np.less_equal, a, b)


def greater(a, b):
    """a > b; bool."""
    return _cmp(np.greater, a, b)


def greater_equal(a, b):
    """a >= b; bool."""
    return _cmp(np.greater_equal, a, b)


def logical_and(a, b):
    """Elementwise and of two bool arrays, broadcast."""
    return np.logical_and(np.asarray(a, bool), np.asarray(b, bool))


def logical_or(a, b):
    """Elementwise or."""
    return np.logical_or(np.asarray(a, bool), np.asarray(b, bool))


def logical_xor(a, b):
    """Elementwise exclusive or."""
    return np.asarray(a, bool) != np.asarray(b, bool)


def logical_not(a):
    """Elementwise not."""
    return ~np.asarray(a, bool)


def where(cond, x, y):
    """cond ? x : y, the three broadcast together (x's dtype)."""
    return np.where(np.asarray(cond, bool), x, y).astype(np.asarray(x).dtype)


def floor(x):
    """Largest integer value <= x (NaN, inf, -0 pass through)."""
    return _unary(x, np.floor)


def ceil(x):
    """Smallest integer value >= x."""
    return _unary(x, np.ceil)


def round_(x):
    """Nearest integer value, ties to even (numpy's rint)."""
    return _unary(x, np.rint)


def erf(x):
    """The error function, from math.erf in float64."""
    return _unary(x, _erf)


_INT_RANGE = {np.dtype(t): (np.iinfo(t).min, np.iinfo(t).max) for t in (np.int8, np.uint8, np.int16, np.int32, np.int64)}


def cast(x, dtype):
    """Value conversion: float to integer truncates toward zero and saturates
    (NaN gives 0); integers wrap; anything to bool is x != 0."""
    x = np.asarray(x)
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return x != 0
    if x.dtype == np.float32 and dt in _INT_RANGE:
        lo, hi = _INT_RANGE[dt]
        v = np.trunc(np.nan_to_num(x.astype(np.float64), nan=0.0))
        # Clamp in float64, then the bounds exactly (float64 cannot hold int64's).
        out = np.clip(v, max(lo, -2.0 ** 63), min(hi, 2.0 ** 63 - 1024)).astype(dt)
        out[v >= hi] = hi
        out[v <= lo] = lo
        return out
    if dt in _INT_RANGE:
        return x.astype(np.int64).astype(dt)  # two's complement wrap
    return x.astype(dt)


def shape(x, dtype=np.int64):
    """The dims of x as a 1-D array (a scalar's shape is [1])."""
    return np.array(np.shape(x) or (1,), dtype=dtype)


def _reduce(f, x, axes, keep_dims, dtype):
    x = np.asarray(x)
    ax = [_axis(a, x.ndim) for a in axes]
    if len(set(ax)) != len(ax):
        raise ValueError("duplicate axes")
    if not ax:
        return x.astype(np.float32)
    return np.asarray(f(x.astype(dtype), axis=tuple(ax), keepdims=bool(keep_dims)), dtype=np.float32)


def reduce_min(x, axes=(), keep_dims=0):
    """Smallest element over axes (NaN propagates)."""
    return _reduce(np.min, x, axes, keep_dims, np.float32)


def reduce_sum(x, axes=(), keep_dims=0):
    """Sum over axes, in float64."""
    return _reduce(np.sum, x, axes, keep_dims, np.float64)


def reduce_prod(x, axes=(), keep_dims=0):
    """Product over axes, in float64."""
    return _reduce(np.prod, x, axes, keep_dims, np.float64)


def expand(x, shape):
    """x broadcast with `shape` both ways (ONNX Expand): numpy broadcasting of x.shape and shape."""
    out = np.broadcast_shapes(np.shape(x), tuple(shape))
    return np.broadcast_to(x, out).copy()


def tile(x, sizes):
    """x repeated sizes[i] times along dim i (numpy tile with len(sizes) == rank)."""
    if len(sizes) != np.ndim(x) or min(sizes, default=1) < 1:
        raise ValueError("one repeat >= 1 per dim")
    return np.tile(x, sizes)


def dynamic_update_slice(x, update, start):
    """x with `update` written at `start` (TFLite DYNAMIC_UPDATE_SLICE / XLA):
    each start index clamped to [0, x.shape[i] - update.shape[i]] so the
    update fits."""
    if np.ndim(update) != np.ndim(x) or len(start) != np.ndim(x):
        raise ValueError("update and start must have x's rank")
    if any(u > n for u, n in zip(np.shape(update), np.shape(x))):
        raise ValueError("update larger than x")
    out = np.array(x, copy=True)
    c = [min(max(int(v), 0), n - k) for v, n, k in zip(start, np.shape(x), np.shape(update))]
    out[tuple(slice(a, a + k) for a, k in zip(c, np.shape(update)))] = update
    return out


def range_(start, limit, delta, dtype=None):
    """start + i * delta for i < ceil((limit - start) / delta): ints exactly,
    floats in float64 then rounded to float32."""
    if delta == 0:
        raise ValueError("delta 0")
    n = int(np.ceil((limit - start) / delta)) if isinstance(start, float) else -((start - limit) // delta)
    if n < 1:
        raise ValueError("empty range")
    if isinstance(start, float):
        return (start + np.arange(n, dtype=np.float64) * delta).astype(np.float32)
    return (start + np.arange(n, dtype=np.int64) * delta).astype(dtype or np.int64)


def _sigmoid64(x):
    return 1.0 / (1.0 + np.exp(-x))


def _rnn_clip(x, clip):
    return np.clip(x, -clip, clip) if clip else x


def _rnn_setup(x, w, gates, layout, *states):
    """x and the initial states in time-major form (float64), the sizes (T, B, D, H) and zeroed Y [T, D, B, H]
    and one [D, B, H] per state."""
    x = np.asarray(x, np.float64)
    if layout == 1:
        x = x.transpose(1, 0, 2)
    T, B, _ = x.shape
    D, H = w.shape[0], w.shape[1] // gates
    states = tuple(None if s is None else (s.transpose(1, 0, 2) if layout == 1 else s) for s in states)
    return x, states, (T, B, D, H), (np.zeros((T, D, B, H)),) + tuple(np.zeros((D, B, H)) for _ in states)


def lstm(x, w, r, b=None, h0=None, c0=None, p=None, direction="forward", layout=0, clip=0.0, input_forget=False):
    """ONNX LSTM, plain loops over directions, batch entries and steps in float64 (gate order i, o, f, c;
    W [D, 4H, I], R [D, 4H, H], B [D, 8H], P [D, 3H] i, o, f; layout 1: X [B, T, I] and batch-first
    states). Returns (Y, Y_h, Y_c)."""
    x, (h0, c0), (T, B, D, H), (Y, Yh, Yc) = _rnn_setup(x, w, 4, layout, h0, c0)
    for d in range(D):
        W, R = w[d].astype(np.float64), r[d].astype(np.float64)
        bias = np.zeros(8 * H) if b is None else b[d].astype(np.float64)
        P = np.zeros(3 * H) if p is None else p[d].astype(np.float64)
        reverse = direction == "reverse" or d == 1
        for n in range(B):
            h = np.zeros(H) if h0 is None else h0[d, n].astype(np.float64)
            c = np.zeros(H) if c0 is None else c0[d, n].astype(np.float64)
            steps = range(T - 1, -1, -1) if reverse else range(T)
            for t in steps:
                g = W @ x[t, n] + R @ h + bias[:4 * H] + bias[4 * H:]
                gi, go, gf, gc = g[:H], g[H:2 * H], g[2 * H:3 * H], g[3 * H:]
                i = _sigmoid64(_rnn_clip(gi + P[:H] * c, clip))
                f = 1 - i if input_forget else _sigmoid64(_rnn_clip(gf + P[2 * H:] * c, clip))
                cand = np.tanh(_rnn_clip(gc, clip))
                c = f * c + i * cand
                o = _sigmoid64(_rnn_clip(go + P[H:2 * H] * c, clip))
                h = o * np.tanh(c)
                Y[t, d, n] = h
            Yh[d, n] = h
            Yc[d, n] = c
    if layout == 1:
        return Y.transpose(2, 0, 1, 3), Yh.transpose(1, 0, 2), Yc.transpose(1, 0, 2)
    return Y, Yh, Yc


def gru(x, w, r, b=None, h0=None, direction="forward", layout=0, clip=0.0, linear_before_reset=0):
    """ONNX GRU, plain loops in float64 (gate order z, r, h; W [D, 3H, I], R [D, 3H, H], B [D, 6H]).
    Returns (Y, Y_h)."""
    x, (h0,), (T, B, D, H), (Y, Yh) = _rnn_setup(x, w, 3, layout, h0)
    for d in range(D):
        W, R = w[d].astype(np.float64), r[d].astype(np.float64)
        bias = np.zeros(6 * H) if b is None else b[d].astype(np.float64)
        Wb, Rb = bias[:3 * H], bias[3 * H:]
        reverse = direction == "reverse" or d == 1
        for n in range(B):
            h = np.zeros(H) if h0 is None else h0[d, n].astype(np.float64)
            steps = range(T - 1, -1, -1) if reverse else range(T)
            for t in steps:
                xt = x[t, n]
                z = _sigmoid64(_rnn_clip(W[:H] @ xt + R[:H] @ h + Wb[:H] + Rb[:H], clip))
                rr = _sigmoid64(_rnn_clip(W[H:2 * H] @ xt + R[H:2 * H] @ h + Wb[H:2 * H] + Rb[H:2 * H], clip))
                if linear_before_reset:
                    pre = W[2 * H:] @ xt + rr * (R[2 * H:] @ h + Rb[2 * H:]) + Wb[2 * H:]
                else:
                    pre = W[2 * H:] @ xt + R[2 * H:] @ (rr * h) + Rb[2 * H:] + Wb[2 * H:]
                hh = np.tanh(_rnn_clip(pre, clip))
                h = (1 - z) * hh + z * h
                Y[t, d, n] = h
            Yh[d, n] = h
    if layout == 1:
        return Y.transpose(2, 0, 1, 3), Yh.transpose(1, 0, 2)
    return Y, Yh


REFERENCE = {
    "FullyConnected": fully_connected, "MatMul": matmul,
    "Conv2D": conv2d, "DepthwiseConv2D": depthwise_conv2d, "TransposeConv2D": transpose_conv2d,
    "MaxPool2D": max_pool2d, "AveragePool2D": average_pool2d, "Mean": mean,
    "ReduceMax": reduce_max,
    "Add": add, "Sub": sub, "Mul": mul, "Div": div, "Maximum": maximum, "Minimum": minimum,
    "Relu": relu, "Relu6": relu6, "LeakyRelu": leaky_relu, "PRelu": prelu,
    "HardSwish": hard_swish, "Logistic": logistic, "Tanh": tanh, "Gelu": gelu,
    "Exp": exp, "Log": log, "Sqrt": sqrt, "Rsqrt": rsqrt,
    "Softmax": softmax, "LogSoftmax": log_softmax, "LayerNorm": layer_norm, "BatchNorm": batch_norm,
    "Reshape": reshape, "Squeeze": squeeze, "ExpandDims": expand_dims, "Transpose": transpose,
    "Concat": concat, "Split": split, "Slice": slice_, "StridedSlice": strided_slice,
    "Pad": pad, "Gather": gather, "ResizeBilinear": resize_bilinear,
    "ResizeNearest": resize_nearest, "DepthToSpace": depth_to_space, "SpaceToDepth": space_to_depth,
    "Equal": equal, "NotEqual": not_equal, "Less": less, "LessEqual": less_equal, "Greater": greater,
    "GreaterEqual": greater_equal, "LogicalAnd": logical_and, "LogicalOr": logical_or, "LogicalXor": logical_xor,
    "LogicalNot": logical_not, "Where": where, "Floor": floor, "Ceil": ceil, "Round": round_, "Erf": erf,
    "Cast": cast, "Shape": shape, "ReduceMin": reduce_min, "ReduceSum": reduce_sum, "ReduceProd": reduce_prod,
    "Expand": expand, "Tile": tile, "DynamicUpdateSlice": dynamic_update_slice, "Range": range_, "LSTM": lstm, "GRU": gru,
}


def self_test():
    """Checks of the references themselves: against hand-computed values,
    numpy, and each other (1x1 conv == FullyConnected, TransposeConv2D ==
    the adjoint of Conv2D, ...). Run by test_references.py."""
    rng = np.random.default_rng(0)
    R = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    # DynamicUpdateSlice: written by hand, and a start past the end clamped back
    assert dynamic_update_slice(np.zeros((2, 4)), np.array([[7, 8]]), [1, 1]).tolist() == \
        [[0, 0, 0, 0], [0, 7, 8, 0]]
    assert dynamic_update_slice(np.zeros((1, 3)), np.array([[5, 6]]), [-3, 9]).tolist() == [[0, 5, 6]]

    def close(a, b, tol=1e-5):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)

    def raises(f, *a, **k):
        try:
            f(*a, **k)
        except (ValueError, IndexError):
            return
        raise AssertionError("accepted bad input")

    # SAME/VALID output sizes and pads (TF rule).
    for n, k, s, d in np.ndindex(12, 5, 4, 3):
        if n and k and s and d:
            out, b, a = window_out(n, k, s, d, 1)
            assert out == -(-n // s) and a - b in (0, 1)
            if n >= (k - 1) * d + 1:
                assert window_out(n, k, s, d, 0)[0] == (n - (k - 1) * d - 1) // s + 1
    assert window_out(5, 3, 2, 1, 1) == (3, 1, 1) and window_out(4, 3, 2, 1, 1) == (2, 0, 1)
    assert conv2d(R(1, 7, 8, 2), R(3, 3, 3, 2), strides=(2, 3), dilations=(2, 1), padding=1).shape == (1, 4, 3, 3)

    # Conv2D by hand; 1x1 conv == FullyConnected; grouped == per-group; depthwise == grouped (groups=C).
    x, o2, o3 = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1), np.ones((1, 2, 2, 1)), np.ones((1, 3, 3, 1))
    close(conv2d(x, o2)[0, :, :, 0], [[12, 16], [24, 28]])
    close(conv2d(x, o3, padding=1)[0, :, :, 0], [[12, 21, 16], [27, 45, 33], [24, 39, 28]])
    close(conv2d(x, o3, padding=2, pads=(1, 1, 0, 1), strides=(2, 2))[0, :, :, 0], [[21], [39]])
    close(conv2d(x, o2, dilations=(2, 2), bias=[-20.0], activation=1)[0, :, :, 0], [[0]])
    x, w, bias = R(2, 4, 5, 6), R(7, 1, 1, 6), R(7)
    close(conv2d(x, w, bias), fully_connected(x, w[:, 0, 0, :], bias))
    x, w = R(1, 6, 5, 6), R(9, 3, 2, 2)
    ref = concat([conv2d(x[..., 2 * g:2 * g + 2], w[3 * g:3 * g + 3], padding=1, strides=(2, 1)) for g in range(3)], -1)
    close(conv2d(x, w, padding=1, strides=(2, 1), groups=3), ref)
    for M in (1, 2):
        x, w, bias = R(2, 7, 6, 3), R(1, 3, 3, 3 * M), R(3 * M)
        for pd, pads in ((0, (0, 0, 0, 0)), (1, (0, 0, 0, 0)), (2, (2, 0, 1, 1))):
            kw = dict(strides=(2, 1), dilations=(1, 2), padding=pd, pads=pads, activation=2)
            close(depthwise_conv2d(x, w, bias, depth_multiplier=M, **kw),
                  conv2d(x, np.transpose(w, (3, 1, 2, 0)), bias, groups=3, **kw))

    # TransposeConv2D by hand, and as the adjoint of Conv2D (weights with in/out channels swapped).
    x = np.array([1, 2, 3, 4], np.float32).reshape(1, 2, 2, 1)
    close(transpose_conv2d(x, o2, strides=(2, 2))[0, :, :, 0], np.kron([[1, 2], [3, 4]], np.ones((2, 2))))
    for pd, pads, s, d, k, H in ((0, (0,) * 4, 2, 1, 3, 9), (0, (0,) * 4, 2, 1, 3, 10), (1, (0,) * 4, 2, 1, 3, 8),
                                 (1, (0,) * 4, 3, 2, 2, 9), (1, (0,) * 4, 1, 1, 4, 5), (2, (1, 2, 0, 1), 2, 2, 3, 11),
                                 (2, (2, 1, 1, 0), 3, 1, 2, 7)):
        x, w = R(2, H, H - (s if pd == 1 else 1), 3), R(4, k, k, 3)  # SAME: adjoint needs size % s == 0
        c = conv2d(x, w, strides=(s, s), dilations=(d, d), padding=pd, pads=pads)
        yv = R(*c.shape)
        op = [x.shape[1 + i] - transpose_conv_out(c.shape[1 + i], k, s, d, pd, pads[2 * i], pads[2 * i + 1])[0]
              for i in range(2)]
        t = transpose_conv2d(yv, np.transpose(w, (3, 1, 2, 0)), strides=(s, s), dilations=(d, d), padding=pd,
                             pads=pads, output_padding=op)
        assert t.shape == x.shape, (t.shape, x.shape)
        close(np.vdot(_f64(c), _f64(yv)), np.vdot(_f64(x), _f64(t)), 1e-4)

    # Pooling and Mean.
    x = np.full((1, 5, 4, 2), 3.5, np.float32)
    close(average_pool2d(x, filter=(3, 3), strides=(2, 2), padding=1), np.full((1, 3, 2, 2), 3.5))
    close(max_pool2d(-x, filter=(3, 3), strides=(2, 1), padding=1), np.full((1, 3, 4, 2), -3.5))
    p = average_pool2d(np.ones((1, 3, 3, 1), np.float32), filter=(3, 3), padding=1, count_include_pad=1)
    close(p[0, :, :, 0], np.array([[4, 6, 4], [6, 9, 6], [4, 6, 4]]) / 9)
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    close(max_pool2d(x, filter=(2, 2), strides=(2, 2))[0, :, :, 0], [[5, 7], [13, 15]])
    close(average_pool2d(x, filter=(2, 2), strides=(2, 2))[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
    close(average_pool2d(x, filter=(3, 3), padding=1)[0, 0, :2, 0], [2.5, 3])
    close(max_pool2d(x, filter=(2, 2), strides=(2, 2), activation=3)[0, :, :, 0], [[1, 1], [1, 1]])
    x = R(2, 3, 4, 5)
    close(mean(x, axes=[1, -2], keep_dims=1), x.mean(axis=(1, 2), keepdims=True))
    close(mean(x, axes=[1, 2]), average_pool2d(x, filter=(3, 4))[:, 0, 0, :])
    raises(mean, x, axes=[1, -3])
    close(reduce_max(x, axes=[1, -2]), max_pool2d(x, filter=(3, 4))[:, 0, 0, :])
    raises(reduce_max, x, axes=[0, 0])

    # Linear algebra and elementwise.
    a, b = R(3, 1, 4, 5), R(2, 5, 6)
    close(matmul(a, b), np.matmul(a, b), 1e-4)
    close(matmul(a, np.swapaxes(b, -1, -2), transpose_b=1), np.matmul(a, b), 1e-4)
    close(matmul(np.swapaxes(a, -1, -2), b, transpose_a=1), np.matmul(a, b), 1e-4)
    assert fully_connected(R(2, 3, 4), R(5, 4)).shape == (2, 3, 5)
    close(add([[1.0, -2.0]], [[3.0], [-4.0]], activation=1), [[4, 1], [0, 0]])
    close(div([1.0, -1.0], [0.0, 0.0]), [np.inf, -np.inf])
    assert np.isnan(log([-1.0])).all() and np.isnan(sqrt([-1.0])).all() and np.isnan(maximum([np.nan], [1.0])).all()
    close(hard_swish([-4.0, -1.5, 0.0, 1.0, 4.0]), [0, -0.375, 0, 4 / 6, 4])
    close(leaky_relu([-1.0, 2.0]), [-0.2, 2.0])
    close(prelu([[-1.0, -2.0], [3.0, -4.0]], [0.5, 0.25]), [[-0.5, -0.5], [3, -1]])
    close(gelu([0.0, 1.0, -1.0]), [0.0, 0.8413447460685429, -0.15865525393145707])
    close(gelu(np.linspace(-4, 4, 41)), gelu(np.linspace(-4, 4, 41), approximate=1), 1e-3)
    close(logistic([0.0]), [0.5]), close(rsqrt([4.0]), [0.5]), close(relu6([-1, 3, 7]), [0, 3, 6])

    # Normalization.
    x = R(3, 4, 7) * 10
    close(softmax(x, axis=1, beta=0.5).sum(axis=1), np.ones((3, 7)))
    close(log_softmax(x, beta=2.0), np.log(softmax(x, beta=2.0)), 1e-4)
    ln = layer_norm(x, np.ones((4, 7), np.float32), axis=1, epsilon=0.0)
    close(ln.mean(axis=(1, 2)), np.zeros(3)), close(ln.var(axis=(1, 2)), np.ones(3), 1e-4)
    sc, bi, mu, var = R(7), R(7), R(7), np.abs(R(7)) + 0.1
    close(batch_norm(x, sc, bi, mu, var), (x - mu) / np.sqrt(var + 1e-5) * sc + bi, 1e-4)

    # Data movement.
    x = R(2, 1, 3, 1)
    assert reshape(x, [3, -1]).shape == (3, 2) and squeeze(x).shape == (2, 3) and squeeze(x, [-1]).shape == (2, 1, 3)
    assert expand_dims(x, -1).shape == (2, 1, 3, 1, 1) and expand_dims(x, 0).shape == (1, 2, 1, 3, 1)
    raises(reshape, x, [4, -1]), raises(squeeze, x, [0]), raises(expand_dims, x, 5)
    x = np.arange(60, dtype=np.int32).reshape(3, 4, 5)
    parts = split(x, -1, sizes=[1, -1, 2])
    assert [p.shape[-1] for p in parts] == [1, 2, 2] and (concat(parts, -1) == x).all()
    assert len(split(x, 1, num_outputs=2)) == 2 and (concat(split(x, 1, num_outputs=2), 1) == x).all()
    assert (slice_(x, [1, -2, 0], [-1, 2, 3]) == x[1:, 2:4, 0:3]).all() and transpose(x, [2, 0, 1]).shape == (5, 3, 4)
    y = np.arange(7 * 6, dtype=np.int64).reshape(7, 6)  # StridedSlice vs python slicing
    for _ in range(3000):
        b, e, s = rng.integers(-9, 10, 2), rng.integers(-9, 10, 2), rng.choice([-3, -2, -1, 1, 2, 3], 2)
        bm, em, sm = rng.integers(0, 4, 3)
        idx = [int(b[i]) if sm >> i & 1 else
               slice(None if bm >> i & 1 else int(b[i]), None if em >> i & 1 else int(e[i]), int(s[i])) for i in range(2)]
        try:
            want = y[tuple(idx)]
            ok = want.size > 0 and not any(sm >> i & 1 and s[i] < 0 for i in range(2))
        except IndexError:
            ok = False
        try:
            got = strided_slice(y, b, e, s, begin_mask=bm, end_mask=em, shrink_axis_mask=sm)
            assert ok and got.shape == want.shape and (got == want).all(), (b, e, s, bm, em, sm)
        except ValueError:
            assert not ok, (b, e, s, bm, em, sm)
    assert strided_slice(y, [1], [3], [1]).shape == (2, 6)
    x = np.arange(12, dtype=np.int32).reshape(3, 4)
    assert (pad(x, [1, 2, 0, 3], 0, 7) == np.pad(x, ((1, 2), (0, 3)), constant_values=7)).all()
    assert (pad(x, [2, 1, 3, 2], 1) == np.pad(x, ((2, 1), (3, 2)), mode="reflect")).all()
    assert (pad(x, [3, 2, 1, 4], 2) == np.pad(x, ((3, 2), (1, 4)), mode="symmetric")).all()
    raises(pad, x, [3, 0, 0, 0], 1), raises(pad, x, [0, 0, 5, 0], 2)
    p, ind = R(4, 5, 6), np.array([[0, -1], [2, 4]], np.int32)
    assert gather(p, ind, axis=1).shape == (4, 2, 2, 6) and (gather(p, ind, axis=1) == np.take(p, ind % 5, 1)).all()
    raises(gather, p, [4]), raises(gather, p, [-5])

    # Resize (TFLite float reference).
    x = np.array([0.0, 1.0], np.float32).reshape(1, 1, 2, 1)
    close(resize_bilinear(x, (1, 4), half_pixel_centers=1)[0, 0, :, 0], [0, 0.25, 0.75, 1])
    close(resize_bilinear(x, (1, 4))[0, 0, :, 0], [0, 0.5, 1, 1])
    close(resize_bilinear(x, (1, 4), align_corners=1)[0, 0, :, 0], [0, 1 / 3, 2 / 3, 1])
    x = R(2, 3, 4, 2)
    for ac, hp in ((0, 0), (1, 0), (0, 1)):
        close(resize_bilinear(x, (3, 4), ac, hp), x)
        assert (resize_nearest(x, (3, 4), ac, hp) == x).all()
        assert (resize_nearest(x, (6, 8), 0, hp) == x.repeat(2, 1).repeat(2, 2)).all()
    assert (resize_nearest(x, (1, 1)) == x[:, :1, :1]).all()
    v = np.arange(3, dtype=np.float32).reshape(1, 1, 3, 1)
    assert list(resize_nearest(v, (1, 5), align_corners=1)[0, 0, :, 0]) == [0, 1, 1, 2, 2]  # round(0.5) = 1
    assert list(resize_nearest(v, (1, 2), half_pixel_centers=1)[0, 0, :, 0]) == [0, 2]

    # DepthToSpace / SpaceToDepth against reshape+transpose formulas.
    x = np.arange(2 * 2 * 3 * 12).reshape(2, 2, 3, 12)
    dcr = x.reshape(2, 2, 3, 2, 2, 3).transpose(0, 1, 3, 2, 4, 5).reshape(2, 4, 6, 3)
    crd = x.reshape(2, 2, 3, 3, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(2, 4, 6, 3)
    assert (depth_to_space(x, 2) == dcr).all() and (depth_to_space(x, 2, mode=1) == crd).all()
    for m in (0, 1):
        assert (space_to_depth(depth_to_space(x, 2, m), 2, m) == x).all()
    # Ops on run-time data.
    assert list(round_(np.array([0.5, 1.5, 2.5, -0.5, -1.5], np.float32))) == [0, 2, 2, -0.0, -2]
    assert list(cast(np.array([2.9, -2.9, 300.0, np.nan], np.float32), np.int8)) == [2, -2, 127, 0]
    assert list(cast(np.array([257, -1], np.int32), np.uint8)) == [1, 255]
    assert list(range_(1, 10, 4)) == [1, 5, 9] and list(range_(5, 0, -2)) == [5, 3, 1]
    close(range_(0.0, 1.0, 0.25), [0, 0.25, 0.5, 0.75])
    raises(range_, 3, 3, 1), raises(range_, 0, 1, 0)
    assert tile(np.arange(2), [3]).tolist() == [0, 1, 0, 1, 0, 1]
    assert expand(np.arange(3).reshape(3, 1), (2, 1, 4)).shape == (2, 3, 4)
    assert list(not_equal(np.array([np.nan, 1.0]), 1.0)) == [True, False]
    close(reduce_prod(np.array([[1, 2], [3, 4]], np.float32), axes=[1]), [2, 12])
    # Recurrent: one unit, one input, by hand. LSTM with W = [1, 0, 0, 2] (i, o, f, c), R = 0, x = 1:
    # i = s(1), o = f = 1/2, c = i tanh(2), h = tanh(c) / 2; a second step with x = 0 keeps c * f.
    s1, t2 = 1 / (1 + math.exp(-1)), math.tanh(2)
    y, yh, yc = lstm(np.array([[[1.0]], [[0.0]]]), np.array([[[1.0], [0], [0], [2]]]), np.zeros((1, 4, 1)))
    c1 = s1 * t2
    close(y[0, 0, 0], [math.tanh(c1) / 2])
    close(yc[0], [[c1 / 2 + 0.5 * math.tanh(0)]])
    close(yh[0], [[math.tanh(c1 / 2) / 2]])
    # reverse runs the last step first: its first output (step 1) sees x = 0 from a zero state.
    y, yh, _ = lstm(np.array([[[1.0]], [[0.0]]]), np.array([[[1.0], [0], [0], [2]]]), np.zeros((1, 4, 1)),
                    direction="reverse")
    close(y[1, 0, 0], [0.0])
    close(yh[0], y[0, 0])
    # GRU with W = [0, 0, 1] (z, r, h), R = 0, h0 = 1, x = 2: z = r = 1/2, n = tanh(2), h = n / 2 + 1 / 2.
    y, yh = gru(np.array([[[2.0]]]), np.array([[[0.0], [0], [1]]]), np.zeros((1, 3, 1)), h0=np.ones((1, 1, 1)))
    close(yh[0], [[t2 / 2 + 0.5]])
    # linear_before_reset with R_h = 1, Rb_h = 1, h0 = 1: 0 gives n = tanh(2 + r h + 1), 1 tanh(2 + r (h + 1)).
    b = np.zeros((1, 6))
    b[0, 5] = 1.0
    rr = np.array([[[0.0], [0], [1]]])
    y0 = gru(np.array([[[2.0]]]), np.array([[[0.0], [0], [1]]]), rr, b, np.ones((1, 1, 1)))[1]
    y1 = gru(np.array([[[2.0]]]), np.array([[[0.0], [0], [1]]]), rr, b, np.ones((1, 1, 1)), linear_before_reset=1)[1]
    close(y0[0], [[math.tanh(2 + 0.5 + 1) / 2 + 0.5]])
    close(y1[0], [[math.tanh(2 + 0.5 * 2) / 2 + 0.5]])
    assert all(callable(f) for f in REFERENCE.values())


if __name__ == "__main__":
    self_test()
    print("reference.py self-check: all passed")
