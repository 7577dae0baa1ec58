"""tinf_dtype codes and numpy dtypes."""

import numpy as np

FLOAT32, FLOAT16, INT8, UINT8, INT32, INT64, INT16, BOOL = 1, 2, 3, 4, 5, 6, 7, 8

TO_NUMPY = {
    FLOAT32: np.dtype(np.float32), FLOAT16: np.dtype(np.float16), INT8: np.dtype(np.int8),
    UINT8: np.dtype(np.uint8), INT32: np.dtype(np.int32), INT64: np.dtype(np.int64),
    INT16: np.dtype(np.int16), BOOL: np.dtype(np.bool_),
}
FROM_NUMPY = {v: k for k, v in TO_NUMPY.items()}


def code_of(dtype) -> int:
    """The tinf dtype code of a numpy dtype (or anything np.dtype accepts)."""
    dt = np.dtype(dtype)
    try:
        return FROM_NUMPY[dt.newbyteorder("=") if dt.byteorder == "<" else dt]
    except KeyError:
        raise ValueError(f"dtype {dt} is not supported by tinyinfer") from None
