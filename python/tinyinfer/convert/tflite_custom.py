"""TFLite CUSTOM ops that the importer maps onto runtime ops.

- `Convolution2DTransposeBias` (MediaPipe, e.g. selfie_segmentation): a
  transposed convolution with a bias. Inputs: data [N,H,W,Cin], weights OHWI
  [Cout,KH,KW,Cin], bias [Cout]. custom_options is a raw little-endian C
  struct TfLiteTransposeConvParams: int32 padding (1 SAME, 2 VALID), int32
  stride_width, int32 stride_height (later TFLite versions append fields,
  which this op does not read). The output size is computed from the input:
  with SAME, P = max(0, K - (in - 1) % S - 1) per spatial dim, output =
  S * (in - 1) + K - P, and the scatter starts P // 2 rows/cols in (the rest
  of P is cut at the end); VALID (and MediaPipe's any-other-value) is P = 0.
  This becomes TransposeConv2D with explicit pads [P//2, P - P//2].
- `MaxPoolingWithArgmax2D` and `MaxUnpooling2D` (MediaPipe's segmentation
  nets): custom_options is a raw little-endian TfLitePoolParams: int32
  padding (1 SAME, 2 VALID), stride_width, stride_height, filter_width,
  filter_height, activation (later fields not read). The pooling outputs the
  window maxima (the fused activation applied) and, per output, the index of
  the first maximum in its window in raster order, dy * filter_width + dx,
  as float32 plus 0.1 (MediaPipe's kernel). The unpooling writes each input
  value at the window position its index names in a zeroed output of
  [N, H * filter_height, W * filter_width, C]. Both are mapped onto runtime
  ops for windows that tile the image (filter = stride, square, the image a
  multiple of it: the case of the published models; others are refused):
  MaxPool2D for the maxima; SpaceToDepth, ReduceMax, Equal, Where and
  ReduceMin for the index; Floor, Equal, Where and DepthToSpace for the
  unpooling. Where they differ from MediaPipe's kernels: a window of only
  NaN or -inf (MediaPipe: value -FLT_MAX, index 0), and indices outside
  [0, filter_height * filter_width) (MediaPipe writes them into a
  neighbouring window when that lies inside the output; here they are
  dropped, as MediaPipe drops those outside the output).
"""

from __future__ import annotations

import struct

import numpy as np

__all__ = ["CUSTOM_OPS", "CUSTOM_HANDLERS", "transpose_conv_bias_pads"]

CUSTOM_OPS = {
    "CUSTOM:Convolution2DTransposeBias": "TransposeConv2D with bias (MediaPipe's custom op; padding and strides "
                                         "from its custom_options)",
    "CUSTOM:MaxPoolingWithArgmax2D": "MaxPool2D and the window index of each maximum (MediaPipe's custom op; "
                                     "square windows equal to their strides that tile the image)",
    "CUSTOM:MaxUnpooling2D": "the inverse scatter of MaxPoolingWithArgmax2D (MediaPipe's custom op; square "
                             "windows equal to their strides) as Equal, Where and DepthToSpace",
}


def transpose_conv_bias_pads(in_size: int, k: int, s: int, same: bool):
    """(before, after) padding and the output size of MediaPipe's transposed
    convolution along one spatial dim."""
    p = max(0, k - (in_size - 1) % s - 1) if same else 0
    return p // 2, p - p // 2, s * (in_size - 1) + k - p


def _custom_options(op) -> bytes:
    """The op's raw custom_options (b"" when absent)."""
    return np.asarray(op.CustomOptionsAsNumpy()).tobytes() if op.CustomOptionsLength() else b""


def _transpose_conv_bias(im, op, name):
    from .tflite import _Refuse
    raw = _custom_options(op)
    if len(raw) < 12:
        raise _Refuse(f"custom_options of {len(raw)} bytes (12 expected: padding, stride_width, stride_height)")
    padding, sw, sh = struct.unpack("<iii", raw[:12])
    if padding not in (1, 2) or sw < 1 or sh < 1:
        raise _Refuse(f"padding {padding}, strides {sh}x{sw} (padding 1 SAME / 2 VALID, strides >= 1)")
    x_info, w_info, b_info = im.info_in(op, 0), im.info_in(op, 1), im.info_in(op, 2)
    out = im.info_out(op)
    if None in (x_info, w_info, b_info):
        raise _Refuse("needs 3 inputs (data, weights, bias)")
    if len(x_info.shape) != 4 or len(w_info.shape) != 4 or int(np.prod(b_info.shape)) != w_info.shape[0]:
        raise _Refuse(f"shapes data {list(x_info.shape)}, weights {list(w_info.shape)}, bias {list(b_info.shape)} "
                      f"(4-D data, OHWI weights, [Cout] bias)")
    if not (im.is_float(x_info) and im.is_float(out)):
        raise _Refuse(f"{x_info.type_name} data (float only, as MediaPipe's kernel)")
    if w_info.shape[3] != x_info.shape[3]:
        raise _Refuse(f"weights' input channels {w_info.shape[3]} != data's {x_info.shape[3]}")
    th, bh, oh = transpose_conv_bias_pads(x_info.shape[1], w_info.shape[1], sh, padding == 1)
    tw, bw, ow = transpose_conv_bias_pads(x_info.shape[2], w_info.shape[2], sw, padding == 1)
    want = (x_info.shape[0], oh, ow, w_info.shape[0])
    if tuple(out.shape) != want:
        raise _Refuse(f"output shape {list(out.shape)} != the {list(want)} its parameters give")
    x, w, b = im.tensor(op, 0, True), im.tensor(op, 1, True), im.tensor(op, 2, True)
    if len(b_info.shape) != 1:
        b = im.emit("Reshape", b, name=b_info.name + "/1d", shape=[w_info.shape[0]])
    im.folded["CUSTOM:Convolution2DTransposeBias -> TransposeConv2D with explicit pads"] += 1
    return im.emit("TransposeConv2D", x, w, b, name=out.name, strides=[sh, sw], padding=2,
                   pads=[th, bh, tw, bw], output_padding=[0, 0], activation=0)


def _pool_params(im, op):
    """MediaPipe's TfLitePoolParams from custom_options, checked: the window
    side b (filter = stride, square) and the fused activation."""
    from .tflite import _Refuse
    raw = _custom_options(op)
    if len(raw) < 24:
        raise _Refuse(f"custom_options of {len(raw)} bytes (24 expected: padding, stride_width, stride_height, "
                      f"filter_width, filter_height, activation)")
    padding, sw, sh, fw, fh, act = struct.unpack("<6i", raw[:24])
    if padding not in (1, 2):
        raise _Refuse(f"padding {padding} (1 SAME or 2 VALID)")
    if not (fh == fw == sh == sw >= 1):
        raise _Refuse(f"filter {fh}x{fw}, strides {sh}x{sw} (only square windows equal to their strides)")
    return fh, act


def _four_d_float(im, info, what):
    from .tflite import _Refuse
    if info is None or len(info.shape) != 4 or not im.is_float(info):
        raise _Refuse(f"{what} must be a 4-D float tensor")
    return [int(d) for d in info.shape]


def _max_pool_argmax(im, op, name):
    from .tflite import _Refuse
    b, act = _pool_params(im, op)
    if len(op.OutputsAsNumpy()) != 2:
        raise _Refuse("needs 2 outputs (values, indices)")
    n, h, w, c = _four_d_float(im, im.info_in(op, 0), "the input")
    if h % b or w % b:
        raise _Refuse(f"input {h}x{w} is not a multiple of the {b}x{b} window")
    values, indices = im.info_out(op, 0), im.info_out(op, 1)
    for info in (values, indices):
        if [int(d) for d in info.shape] != [n, h // b, w // b, c] or not im.is_float(info):
            raise _Refuse(f"output '{info.name}' {list(info.shape)} (float {[n, h // b, w // b, c]} expected)")
    x = im.tensor(op, 0, True)
    # The window tiles the image: SAME adds no padding, as VALID.
    out = im.emit("MaxPool2D", x, name=values.name, filter=[b, b], strides=[b, b], padding=0,
                  activation=im.activation(name, act))
    k = b * b
    stem = indices.name
    v = im.emit("Reshape", im.emit("SpaceToDepth", x, name=stem + "/windows", block_size=b, mode=0),
                name=stem + "/by_position", shape=[n, h // b, w // b, k, c])
    top = im.emit("ReduceMax", v, name=stem + "/max", axes=[3], keep_dims=1)
    hit = im.emit("Equal", v, top, name=stem + "/is_max")
    pos = im.b.const(im.unique(stem + "/positions"), np.arange(k, dtype=np.float32).reshape(1, 1, 1, k, 1))
    none = im.b.const(im.unique(stem + "/none"), np.float32([k]))
    first = im.emit("ReduceMin", im.emit("Where", hit, pos, none, name=stem + "/hit_positions"),
                    name=stem + "/first", axes=[3], keep_dims=0)
    idx = im.emit("Add", first, im.b.const(im.unique(stem + "/tenth"), np.float32([0.1])), name=stem)
    im.folded["CUSTOM:MaxPoolingWithArgmax2D -> MaxPool2D and the first maximum's window index"] += 1
    return [out, idx]


def _max_unpooling(im, op, name):
    from .tflite import _Refuse
    b, _ = _pool_params(im, op)  # MediaPipe's kernel reads no activation
    shape = _four_d_float(im, im.info_in(op, 0), "the input")
    if _four_d_float(im, im.info_in(op, 1), "the indices") != shape:
        raise _Refuse(f"indices {list(im.info_in(op, 1).shape)} do not match the input {shape}")
    n, h, w, c = shape
    out = im.info_out(op)
    if [int(d) for d in out.shape] != [n, h * b, w * b, c] or not im.is_float(out):
        raise _Refuse(f"output {list(out.shape)} (float {[n, h * b, w * b, c]} expected)")
    k = b * b
    stem = out.name
    x5 = im.emit("Reshape", im.tensor(op, 0, True), name=stem + "/values", shape=[n, h, w, 1, c])
    i5 = im.emit("Reshape", im.emit("Floor", im.tensor(op, 1, True), name=stem + "/index"),
                 name=stem + "/index5", shape=[n, h, w, 1, c])
    pos = im.b.const(im.unique(stem + "/positions"), np.arange(k, dtype=np.float32).reshape(1, 1, 1, k, 1))
    at = im.emit("Equal", i5, pos, name=stem + "/at")
    zero = im.b.const(im.unique(stem + "/zero"), np.float32([0]))
    spread = im.emit("Reshape", im.emit("Where", at, x5, zero, name=stem + "/placed"), name=stem + "/depth",
                     shape=[n, h, w, k * c])
    im.folded["CUSTOM:MaxUnpooling2D -> Equal, Where and DepthToSpace"] += 1
    return im.emit("DepthToSpace", spread, name=stem, block_size=b, mode=0)


CUSTOM_HANDLERS = {"CUSTOM:Convolution2DTransposeBias": _transpose_conv_bias,
                   "CUSTOM:MaxPoolingWithArgmax2D": _max_pool_argmax,
                   "CUSTOM:MaxUnpooling2D": _max_unpooling}
assert set(CUSTOM_HANDLERS) == set(CUSTOM_OPS)
