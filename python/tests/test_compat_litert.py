"""Code written against LiteRT's Interpreter, run twice: once with the real
`ai_edge_litert.interpreter` module, once with `tinyinfer.lite` in its place
(the `lite` fixture). Each expectation is checked on the real LiteRT too, so
the tests are about LiteRT's behaviour, and tinyinfer must give the same
outputs (float tolerance; full-integer int8 bit-exact against LiteRT's
reference kernels), the same details and the same exception types.

Models of every precision: the committed fixtures (float32, float16 weights,
dynamic-range, full-integer with int8 I/O and with float I/O, several
inputs), the committed digits models (signatures, dynamic batch), and the
bench models when bench/models has them.
"""

import glob
import os

import numpy as np
import pytest

pytest.importorskip("tflite")
litert = pytest.importorskip("ai_edge_litert.interpreter")

import tinyinfer  # noqa: E402
import tinyinfer.lite  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(HERE, "fixtures", "tflite")

# name -> precision; "f32", "f16" (float16 weights), "dyn" (dynamic-range int8), "int8" (full integer)
MODELS = {
    os.path.join(FIXTURES, "mlp_f32.tflite"): "f32",
    os.path.join(FIXTURES, "cnn_f32.tflite"): "f32",
    os.path.join(FIXTURES, "ops_linear.tflite"): "f32",
    os.path.join(FIXTURES, "mlp_f16.tflite"): "f16",
    os.path.join(FIXTURES, "cnn_f16.tflite"): "f16",
    os.path.join(FIXTURES, "mlp_dyn.tflite"): "dyn",
    os.path.join(FIXTURES, "cnn_dyn.tflite"): "dyn",
    os.path.join(FIXTURES, "mlp_int8.tflite"): "int8",
    os.path.join(FIXTURES, "cnn_int8.tflite"): "int8",
    os.path.join(FIXTURES, "int8_ops.tflite"): "int8",
    os.path.join(FIXTURES, "mlp_int8_floatio.tflite"): "int8",
    os.path.join(ROOT, "models", "digits_mlp.tflite"): "f32",
    os.path.join(ROOT, "models", "digits_cnn.float16.tflite"): "f16",
    os.path.join(ROOT, "models", "digits_mlp.dynamic.tflite"): "dyn",
    os.path.join(ROOT, "models", "digits_cnn.int8.tflite"): "int8",
}
_BENCH_PRECISION = {"float32": "f32", "float16": "f16", "dynamic": "dyn", "int8": "int8"}
for _p in sorted(glob.glob(os.path.join(ROOT, "bench", "models", "*.tflite"))):
    _kind = os.path.basename(_p).split(".")[-2]
    if _kind in _BENCH_PRECISION:
        MODELS[_p] = _BENCH_PRECISION[_kind]
PATHS = [p for p in MODELS if os.path.exists(p)]
SIGNED = [os.path.join(ROOT, "models", n) for n in ("digits_mlp.tflite", "digits_cnn.int8.tflite",
                                                     "digits_cnn.float16.tflite")]
MLP = os.path.join(FIXTURES, "mlp_f32.tflite")


def ids(paths):
    return [os.path.relpath(p, ROOT) for p in paths]


@pytest.fixture(params=["litert", "tinyinfer"])
def lite(request, tmp_path, monkeypatch):
    """The module under test: LiteRT's interpreter module or tinyinfer.lite."""
    monkeypatch.setenv("TINYINFER_CACHE_DIR", str(tmp_path / "cache"))
    return litert if request.param == "litert" else tinyinfer.lite


def feeds_for(details, seed=0, batch=None):
    rng = np.random.default_rng(seed)
    out = []
    for d in details:
        shape = list(d["shape"])
        if batch is not None:
            shape[0] = batch
        dt = np.dtype(d["dtype"])
        if dt.kind == "f":
            out.append(rng.uniform(0, 1, shape).astype(dt))  # the digits models take pixels in [0, 1]
        else:
            info = np.iinfo(dt)
            out.append(rng.integers(info.min, info.max + 1, shape).astype(dt))
    return out


def reference(path, feeds, precision):
    """The real LiteRT's outputs (its reference kernels for full-integer models)."""
    kw = {}
    if precision == "int8":
        kw["experimental_op_resolver_type"] = litert.OpResolverType.BUILTIN_REF
    it = litert.Interpreter(model_path=path, **kw)
    for d, a in zip(it.get_input_details(), feeds):
        if tuple(d["shape"]) != a.shape:
            it.resize_tensor_input(d["index"], a.shape)
    it.allocate_tensors()
    for d, a in zip(it.get_input_details(), feeds):
        it.set_tensor(d["index"], a)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


def assert_same(outs, refs, precision):
    assert len(outs) == len(refs)
    for a, r in zip(outs, refs):
        assert a.dtype == r.dtype and a.shape == r.shape
        if precision == "int8":
            np.testing.assert_array_equal(a, r)
            continue
        scale = max(1.0, float(np.max(np.abs(r))))
        # dynamic-range: LiteRT quantizes activations to int8 at run time, tinyinfer computes in float32
        # on the dequantized weights; they differ by about the activation step
        atol = {"f32": 1e-5, "f16": 1e-4, "dyn": 0.05}[precision] * scale
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=atol)


def assert_details_equal(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert sorted(a) == sorted(b)
        for key in ("name", "index", "dtype", "quantization", "sparsity_parameters"):
            assert a[key] == b[key], (key, a[key], b[key])
        for key in ("shape", "shape_signature"):
            assert a[key].dtype == b[key].dtype and a[key].tolist() == b[key].tolist(), (key, a, b)
        qa, qb = a["quantization_parameters"], b["quantization_parameters"]
        assert sorted(qa) == sorted(qb)
        for key in ("scales", "zero_points"):
            assert qa[key].dtype == qb[key].dtype
            np.testing.assert_array_equal(qa[key], qb[key])
        assert qa["quantized_dimension"] == qb["quantized_dimension"]
        assert qa["block_size"] == qb["block_size"]


# -- the common snippet, on every model --------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS, ids=ids(PATHS))
def test_snippet_gives_litert_outputs(lite, path):
    with open(path, "rb") as f:
        content = f.read()
    # Full-integer models on LiteRT's reference kernels: the outputs are then bit-exact
    # (its default XNNPACK kernels may round a value one step apart: test_int8_default_kernels)
    kw = {"experimental_op_resolver_type": lite.OpResolverType.BUILTIN_REF} if MODELS[path] == "int8" else {}
    interpreter = lite.Interpreter(model_content=content, **kw)
    interpreter.allocate_tensors()
    for seed in (1, 2):  # twice on the same interpreter
        feeds = feeds_for(interpreter.get_input_details(), seed=seed)
        for d, x in zip(interpreter.get_input_details(), feeds):
            interpreter.set_tensor(d["index"], x)
        interpreter.invoke()
        outs = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
        assert_same(outs, reference(path, feeds, MODELS[path]), MODELS[path])


INT8 = [p for p in PATHS if MODELS[p] == "int8"]


@pytest.mark.parametrize("path", INT8, ids=ids(INT8))
def test_int8_default_kernels(lite, path):
    """With the default op resolver, within one quantization step of LiteRT's reference kernels."""
    it = lite.Interpreter(model_path=path)
    it.allocate_tensors()
    feeds = feeds_for(it.get_input_details(), seed=3)
    for d, x in zip(it.get_input_details(), feeds):
        it.set_tensor(d["index"], x)
    it.invoke()
    for d, r in zip(it.get_output_details(), reference(path, feeds, "int8")):
        a = it.get_tensor(d["index"])
        assert a.dtype == r.dtype and a.shape == r.shape
        if a.dtype == np.int8:
            assert np.max(np.abs(a.astype(np.int32) - r)) <= 1
        else:  # float outputs behind a Dequantize: one output step
            step = it.get_output_details()[0]["quantization"][0] or np.max(np.abs(r)) / 127
            np.testing.assert_allclose(a, r, atol=1.01 * step if step else 1e-6)


@pytest.mark.parametrize("path", PATHS, ids=ids(PATHS))
def test_details_are_litert_details(lite, path):
    ours = lite.Interpreter(model_path=path)
    theirs = litert.Interpreter(model_path=path)
    assert_details_equal(ours.get_input_details(), theirs.get_input_details())
    assert_details_equal(ours.get_output_details(), theirs.get_output_details())
    assert_details_equal(ours.get_tensor_details(), theirs.get_tensor_details())
    ours.allocate_tensors()
    theirs.allocate_tensors()
    assert_details_equal(ours.get_input_details(), theirs.get_input_details())
    assert_details_equal(ours.get_output_details(), theirs.get_output_details())
    io = [d["dtype"] for d in ours.get_input_details() + ours.get_output_details()]
    if os.path.basename(path) in ("mlp_int8.tflite", "cnn_int8.tflite", "int8_ops.tflite"):
        assert set(io) == {np.int8}  # full-integer I/O stays int8
        assert all(d["quantization"][0] > 0 for d in ours.get_input_details())


@pytest.mark.parametrize("path", PATHS, ids=ids(PATHS))
def test_constants_read_back(lite, path):
    """get_tensor on a constant (weights, biases) gives the file's values."""
    import tflite
    model = tflite.Model.GetRootAs(open(path, "rb").read(), 0)
    g = model.Subgraphs(0)
    consts = [i for i in range(g.TensorsLength())
              if g.Tensors(i).Buffer() > 0 and model.Buffers(g.Tensors(i).Buffer()).DataLength() > 0]
    assert consts
    it = lite.Interpreter(model_path=path)
    it.allocate_tensors()
    ref = litert.Interpreter(model_path=path)
    ref.allocate_tensors()
    for i in consts[:8]:
        a, b = it.get_tensor(i), ref.get_tensor(i)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


# -- zero-copy access, threads, resizing, signatures ---------------------------------------------------
def test_tensor_views(lite):
    it = lite.Interpreter(model_path=MLP)
    it.allocate_tensors()
    inp = it.tensor(it.get_input_details()[0]["index"])
    out = it.tensor(it.get_output_details()[0]["index"])
    for seed in range(3):
        (x,) = feeds_for(it.get_input_details(), seed=seed)
        inp()[...] = x
        it.invoke()
        assert_same([out().copy()], reference(MLP, [x], "f32"), "f32")
    inp().fill(0.25)
    it.invoke()
    assert_same([out().copy()], reference(MLP, [np.full((1, 64), 0.25, np.float32)], "f32"), "f32")


@pytest.mark.parametrize("threads", [1, 2])
def test_num_threads(lite, threads):
    path = os.path.join(FIXTURES, "cnn_f32.tflite")
    it = lite.Interpreter(model_path=path, num_threads=threads)
    it.allocate_tensors()
    feeds = feeds_for(it.get_input_details(), seed=4)
    it.set_tensor(it.get_input_details()[0]["index"], feeds[0])
    it.invoke()
    assert_same([it.get_tensor(it.get_output_details()[0]["index"])], reference(path, feeds, "f32"), "f32")


@pytest.mark.parametrize("path", SIGNED, ids=ids(SIGNED))
def test_resize_batch(lite, path):
    precision = MODELS[path]
    it = lite.Interpreter(model_path=path)
    d = it.get_input_details()[0]
    assert d["shape_signature"].tolist()[0] == -1
    it.resize_tensor_input(d["index"], [5] + d["shape"].tolist()[1:], strict=True)
    assert it.get_input_details()[0]["shape"].tolist()[0] == 5
    it.allocate_tensors()
    feeds = feeds_for(it.get_input_details(), seed=5)
    it.set_tensor(d["index"], feeds[0])
    it.invoke()
    out = it.get_tensor(it.get_output_details()[0]["index"])
    assert out.shape[0] == 5 and it.get_output_details()[0]["shape"].tolist()[0] == 5
    assert_same([out], reference(path, feeds, precision), precision)
    # strict refuses a fixed dim; not strict accepts it (the model may then refuse it at allocation)
    with pytest.raises(RuntimeError):
        it.resize_tensor_input(d["index"], [5] + [x + 1 for x in d["shape"].tolist()[1:]], strict=True)
    it.resize_tensor_input(d["index"], [2] + d["shape"].tolist()[1:])
    with pytest.raises(ValueError):  # must allocate again before setting
        it.set_tensor(d["index"], feeds_for(it.get_input_details(), batch=2)[0])
    it.allocate_tensors()
    feeds = feeds_for(it.get_input_details(), seed=6)
    it.set_tensor(d["index"], feeds[0])
    it.invoke()
    assert_same([it.get_tensor(it.get_output_details()[0]["index"])], reference(path, feeds, precision), precision)


@pytest.mark.parametrize("path", SIGNED, ids=ids(SIGNED))
def test_signature_runner(lite, path):
    precision = MODELS[path]
    it = lite.Interpreter(model_path=path)
    assert it.get_signature_list() == litert.Interpreter(model_path=path).get_signature_list()
    assert it.get_signature_list() == {"serving_default": {"inputs": ["image"], "outputs": ["output_0"]}}
    runner = it.get_signature_runner()
    assert list(runner.get_input_details()) == ["image"]
    assert list(runner.get_output_details()) == ["output_0"]
    assert runner.get_input_details()["image"]["index"] == it.get_input_details()[0]["index"]
    # (the runner allocates; LiteRT refuses allocate_tensors() on the interpreter while a runner exists)
    for batch in (1, 3):
        feeds = feeds_for(it.get_input_details(), seed=7, batch=batch)
        result = runner(image=feeds[0])
        assert list(result) == ["output_0"]
        assert_same([result["output_0"]], reference(path, feeds, precision), precision)
    runner2 = it.get_signature_runner("serving_default")
    feeds = feeds_for(it.get_input_details(), seed=8, batch=2)
    assert_same([runner2(image=feeds[0])["output_0"]], reference(path, feeds, precision), precision)
    with pytest.raises(ValueError):
        runner(bogus=feeds[0])
    with pytest.raises(ValueError):
        runner()
    with pytest.raises(ValueError):
        it.get_signature_runner("no_such_signature")


def test_no_signatures(lite):
    it = lite.Interpreter(model_path=MLP)
    assert it.get_signature_list() == {}
    with pytest.raises(ValueError):
        it.get_signature_runner()


# -- misuse: the same exception types ------------------------------------------------------------------
def test_order_of_calls(lite):
    it = lite.Interpreter(model_path=MLP)
    ii, oi = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    x = np.zeros((1, 64), np.float32)
    with pytest.raises(RuntimeError):
        it.invoke()
    with pytest.raises(ValueError):
        it.set_tensor(ii, x)
    with pytest.raises(ValueError):
        it.get_tensor(oi)
    it.allocate_tensors()
    it.set_tensor(ii, x)
    it.invoke()
    assert it.get_tensor(oi).shape == (1, 10)


def test_wrong_inputs(lite):
    it = lite.Interpreter(model_path=MLP)
    it.allocate_tensors()
    ii = it.get_input_details()[0]["index"]
    n = len(it.get_tensor_details())
    for bad in (np.zeros((1, 64), np.float64), np.zeros((1, 64), np.int8), [[0.0] * 64],
                np.zeros((2, 64), np.float32), np.zeros((64,), np.float32), np.zeros((1, 1, 64), np.float32),
                np.zeros((1, 63), np.float32)):
        with pytest.raises(ValueError):
            it.set_tensor(ii, bad)
    with pytest.raises(ValueError):
        it.get_tensor(n + 10)
    with pytest.raises(ValueError):
        it.set_tensor(n + 10, np.zeros((1, 64), np.float32))
    with pytest.raises(ValueError):
        it.get_tensor_details(subgraph_index=5)


def test_full_integer_input_refuses_float(lite):
    path = os.path.join(FIXTURES, "mlp_int8.tflite")
    it = lite.Interpreter(model_path=path)
    it.allocate_tensors()
    with pytest.raises(ValueError):
        it.set_tensor(it.get_input_details()[0]["index"], np.zeros((1, 64), np.float32))
    with pytest.raises(ValueError):
        it.set_tensor(it.get_input_details()[0]["index"], np.zeros((1, 64), np.uint8))


def test_constructor_errors(lite, tmp_path):
    with pytest.raises(ValueError):
        lite.Interpreter()
    with pytest.raises(ValueError):
        lite.Interpreter(model_path=MLP, model_content=open(MLP, "rb").read())
    with pytest.raises(ValueError):
        lite.Interpreter(model_path=str(tmp_path / "missing.tflite"))
    with pytest.raises(ValueError):
        lite.Interpreter(model_content=b"garbage!" * 10)
    for threads in (0, -2):
        with pytest.raises(ValueError):
            lite.Interpreter(model_path=MLP, num_threads=threads)
    with pytest.raises(ValueError):
        lite.Interpreter(model_path=MLP, num_threads="2")
    it = lite.Interpreter(model_path=MLP, experimental_op_resolver_type=lite.OpResolverType.BUILTIN_REF)
    assert it.get_input_details()[0]["index"] == 0


# -- what tinyinfer cannot honour: clear errors naming it ---------------------------------------------
def test_unsupported_options_name_themselves():
    with pytest.raises(tinyinfer.InvalidArgumentError, match="experimental_delegates"):
        tinyinfer.lite.Interpreter(model_path=MLP, experimental_delegates=[object()])
    with pytest.raises(tinyinfer.InvalidArgumentError, match="experimental_preserve_all_tensors"):
        tinyinfer.lite.Interpreter(model_path=MLP, experimental_preserve_all_tensors=True)
    with pytest.raises(ValueError, match="delegate"):
        tinyinfer.lite.load_delegate("libedgetpu.so.1")
    with pytest.raises(TypeError):
        tinyinfer.lite.Interpreter(model_path=MLP, no_such_option=1)


def test_intermediate_tensors_refuse_clearly(tmp_path, monkeypatch):
    """LiteRT returns whatever its arena holds for an intermediate tensor;
    tinyinfer keeps no intermediate values and says so."""
    import tflite
    monkeypatch.setenv("TINYINFER_CACHE_DIR", str(tmp_path))
    g = tflite.Model.GetRootAs(open(MLP, "rb").read(), 0).Subgraphs(0)
    io = set(g.InputsAsNumpy().tolist()) | set(g.OutputsAsNumpy().tolist())
    model = tflite.Model.GetRootAs(open(MLP, "rb").read(), 0)
    inter = [i for i in range(g.TensorsLength())
             if i not in io and model.Buffers(g.Tensors(i).Buffer()).DataLength() == 0]
    assert inter
    it = tinyinfer.lite.Interpreter(model_path=MLP)
    it.allocate_tensors()
    it.invoke()
    for i in inter:
        with pytest.raises(tinyinfer.InvalidArgumentError, match="intermediate"):
            it.get_tensor(i)
        with pytest.raises(ValueError, match="intermediate"):
            it.tensor(i)()


def test_unsupported_model_names_the_ops():
    with pytest.raises(tinyinfer.UnsupportedOpError):
        tinyinfer.lite.Interpreter(model_path=os.path.join(FIXTURES, "unsupported_ops.tflite"))


def test_set_tensor_writes_the_sessions_buffer(tmp_path, monkeypatch):
    """tinyinfer.lite copies an input once (into the session's own buffer) and
    runs the session directly: the figure of bench/compat_overhead.py rests
    on it. If Session changes how it keeps its buffers, this fails (the
    interpreter still works, through Session.run, with one more copy)."""
    monkeypatch.setenv("TINYINFER_CACHE_DIR", str(tmp_path))
    it = tinyinfer.lite.Interpreter(model_path=MLP)
    it.allocate_tensors()
    assert it._direct
    view = it.tensor(it.get_input_details()[0]["index"])()
    assert view.base is not None and not view.flags.owndata  # a view of the session's memory


def test_resize_the_model_cannot_take(lite):
    """Not strict, any shape is accepted; allocate_tensors refuses one the graph cannot run."""
    path = os.path.join(ROOT, "models", "digits_mlp.tflite")  # FullyConnected on 784 features
    it = lite.Interpreter(model_path=path)
    it.resize_tensor_input(0, [2, 785])
    assert it.get_input_details()[0]["shape"].tolist() == [2, 785]
    with pytest.raises(RuntimeError):
        it.allocate_tensors()
    with pytest.raises(ValueError):  # a tensor_size that is not a list of dims
        it.resize_tensor_input(0, [[2, 784]])
