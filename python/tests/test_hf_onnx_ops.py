"""ONNX ops that torch.onnx.export of Hugging Face encoders produces beyond the core set: IsNaN on run-time
data (after the attention Softmax) and GatherElements folded at conversion (the token_type_ids buffer), on
small graphs compared with onnxruntime."""

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import helper  # noqa: E402

import tinyinfer  # noqa: E402
from test_convert_onnx_ops import check, model  # noqa: E402


def test_isnan_on_run_time_data_then_where():
    x = np.array([[1.0, np.nan, -np.inf, 0.0], [np.inf, -0.0, np.nan, 3.5]], np.float32)
    nodes = [helper.make_node("Softmax", ["x"], ["s"], axis=-1), helper.make_node("IsNaN", ["x"], ["n"]),
             helper.make_node("IsNaN", ["s"], ["ns"]), helper.make_node("Where", ["ns", "zero", "s"], ["y"])]
    data = model(nodes, {"x": x}, ["n", "y"], opset=17, inits=[("zero", np.float32(0))])
    report = check(data, {"x": x})
    assert any("NotEqual" in line for line in str(report).splitlines() if "ops out" in line)


def test_isnan_of_an_integer_tensor_is_refused():
    x = np.arange(4, dtype=np.int32).reshape(1, 4)
    data = model([helper.make_node("Cast", ["x"], ["f"], to=6), helper.make_node("IsNaN", ["x"], ["y"])],
                 {"x": x}, ["y"], opset=20)
    with pytest.raises(tinyinfer.UnsupportedOpError, match="IsNaN"):
        tinyinfer.convert(data, None, verbose=False)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_elements_of_constants_folds(axis):
    """Indices smaller than the data on the gather axis (onnx.reference fails there; the fold does not)."""
    data_c = np.arange(24, dtype=np.float32).reshape(4, 6)
    idx = np.array([[3, 0, 1], [2, 2, 0]], np.int64) if axis == 0 else np.array([[5, 0, -1], [1, 2, 3]], np.int64)
    x = np.ones((2, 3), np.float32)
    nodes = [helper.make_node("GatherElements", ["d", "i"], ["g"], axis=axis),
             helper.make_node("Add", ["g", "x"], ["y"])]
    report = check(model(nodes, {"x": x}, ["y"], opset=13, inits=[("d", data_c), ("i", idx)]), {"x": x})
    assert "GatherElements x1" in str(report)
