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
"""

from __future__ import annotations

import struct

import numpy as np

__all__ = ["CUSTOM_OPS", "CUSTOM_HANDLERS", "transpose_conv_bias_pads"]

CUSTOM_OPS = {
    "CUSTOM:Convolution2DTransposeBias": "TransposeConv2D with bias (MediaPipe's custom op; padding and strides "
                                         "from its custom_options)",
}


def transpose_conv_bias_pads(in_size: int, k: int, s: int, same: bool):
    """(before, after) padding and the output size of MediaPipe's transposed
    convolution along one spatial dim."""
    p = max(0, k - (in_size - 1) % s - 1) if same else 0
    return p // 2, p - p // 2, s * (in_size - 1) + k - p


def _transpose_conv_bias(im, op, name):
    from .tflite import _Refuse
    raw = np.asarray(op.CustomOptionsAsNumpy()).tobytes() if op.CustomOptionsLength() else b""
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


CUSTOM_HANDLERS = {"CUSTOM:Convolution2DTransposeBias": _transpose_conv_bias}
assert set(CUSTOM_HANDLERS) == set(CUSTOM_OPS)
