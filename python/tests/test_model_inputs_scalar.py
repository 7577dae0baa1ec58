"""A one-element input (the converters write ONNX/TFLite scalars as [1])
takes a 0-d numpy array too, in Model.run, Session.run and in a session's
input_shapes; anything with more elements is still refused."""

import numpy as np
import pytest

import tinyinfer
from tinyinfer.builder import GraphBuilder


def _model():
    g = GraphBuilder("scalar")
    x = g.input("x", (2, 3))
    s = g.input("s", (1,))
    g.output(g.op("Mul", x, s))
    return tinyinfer.load(g.to_bytes())


def test_scalar_for_one_element_input():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    with _model() as m:
        (y,) = m.run([x, np.float32(2.5)])
        np.testing.assert_array_equal(y, x * np.float32(2.5))
        (y,) = m.run({"x": x, "s": np.array(-1.0, dtype=np.float32)})
        np.testing.assert_array_equal(y, -x)
        with m.session(input_shapes=[(2, 3), ()]) as s:
            (y,) = s.run([x, np.array(3.0, dtype=np.float32)])
            np.testing.assert_array_equal(y, x * 3)


def test_more_elements_still_refused():
    x = np.zeros((2, 3), np.float32)
    with _model() as m:
        with m.session() as s:
            with pytest.raises(tinyinfer.InvalidArgumentError, match="input 's' has shape"):
                s.run([x, np.zeros(2, np.float32)])
        # Model.run takes a first dimension of 2 as a batch: the graph refuses it
        with pytest.raises(tinyinfer.ShapeError, match="do not broadcast"):
            m.run([x, np.zeros(2, np.float32)])


def test_single_input_dict_takes_the_fast_path_and_checks_names(tmp_path):
    """A one-input session run with a dict (the fast path since it reads the
    entry under the input's name) gives the list call's outputs; a dict under
    another name, or with extra entries, is refused with the names."""
    from tinyinfer.builder import GraphBuilder
    b = GraphBuilder("one")
    x = b.input("x", (2, 3))
    b.output(b.op("Relu", x))
    path = str(tmp_path / "one.tinf")
    b.save(path)
    a = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    with tinyinfer.load(path) as m, m.session() as s:
        assert np.array_equal(s.run({"x": a})[0], np.maximum(a, 0))
        assert np.array_equal(s.run({"x": a})[0], s.run([a])[0])
        with pytest.raises(tinyinfer.InvalidArgumentError, match="unknown input name"):
            s.run({"y": a})
        with pytest.raises(tinyinfer.InvalidArgumentError, match="unknown input name"):
            s.run({"x": a, "y": a})
