"""TorchScript archives and quantized state_dicts, converted without torch,
against torch running the same files.

The files are made in tmp_path by fixtures/torch_models.py (with torch; the
tests skip without it). Float cases must match torch to 1e-5 relative; int8
cases (quantize_dynamic) must be within the difference torch's own dynamic
kernels show against the float model. One test converts in a subprocess
where importing torch fails, to show the converter does not need it."""

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tinyinfer  # noqa: E402
from tinyinfer.convert import nn as tnn  # noqa: E402
from tinyinfer.convert import torchscript as ts  # noqa: E402
from tinyinfer.convert.torch_weights import QuantizedTensor, load_state_dict  # noqa: E402

from conftest import assert_close  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "fixtures"))
import torch_models as tm  # noqa: E402

FLOAT_JIT = ["mlp_script", "mlp_trace", "mlp_recipe", "cnn_script", "cnn_trace", "encoder_script", "encoder_trace",
             "encoder_seqfirst_script", "encoder_gelu_normfirst_trace", "slices_script"]
DYN_JIT = ["mlp_dyn_script", "mlp_dyn_trace", "mlp_dyn_pc_script", "cnn_dyn_script"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("torch_models")
    return {c: tm.make(c, str(d)) for c in tm.CASES}


def _inputs(case, n=3):
    shape = tm.CASES[case][2]
    g = torch.Generator().manual_seed(7)
    return [torch.randn(*shape, generator=g) for _ in range(n)]


def _run_tiny(report, x):
    with tinyinfer.Model(report.data) as m:
        return m.run(x.numpy())[0]


@pytest.mark.parametrize("case", FLOAT_JIT)
def test_float_archive_matches_torch(files, case):
    report = tinyinfer.convert(files[case], input_shape=tm.CASES[case][2])
    assert report.importer == "torchscript"
    loaded = torch.jit.load(files[case]).eval()
    for x in _inputs(case):
        with torch.no_grad():
            ref = loaded(x).numpy()
        assert_close(_run_tiny(report, x), ref, rtol=1e-5, atol=1e-5)
    with tinyinfer.Model(report.data) as m:
        assert not any(t.dtype == np.int8 for t in m.tensors())
        if "seqfirst" not in case:  # converted at batch 1 or 2, run at batch 3: the batch stays dynamic
            x = torch.randn(3, *tm.CASES[case][2][1:], generator=torch.Generator().manual_seed(5))
            with torch.no_grad():
                ref = loaded(x).numpy()
            assert_close(m.run(x.numpy())[0], ref, rtol=1e-5, atol=1e-5)


def test_recipe_order_says_the_archive_is_float(files):
    report = tinyinfer.convert(files["mlp_recipe"], input_shape=(1, 64))
    assert any("quantize_dynamic on an already scripted module" in n for n in report.notes)


@pytest.mark.parametrize("case", DYN_JIT)
def test_dynamic_archive_keeps_torch_int8_weights(files, case):
    report = tinyinfer.convert(files[case], input_shape=tm.CASES[case][2])
    qmod = tm.saved_module(case)
    fmod = tm.CASES[case][1]()
    # torch's int8 weights and scales, unchanged, on every quantized Linear
    torch_scales = []
    for _, mod in qmod.named_modules():
        if type(mod).__name__ == "Linear" and hasattr(mod, "_packed_params"):
            w = mod.weight()
            torch_scales.append(np.sort(np.atleast_1d(
                w.q_scale() if w.qscheme() == torch.per_tensor_affine else w.q_per_channel_scales().numpy())))
    with tinyinfer.Model(report.data) as m:
        assert m.metadata.get("quantization") == "int8-dynamic"
        q = [t for t in m.tensors() if t.dtype == np.int8]
        assert len(q) == len(torch_scales) > 0
        ours = [np.sort(t.scales) for t in q]
        assert sorted(map(tuple, ours)) == sorted(tuple(np.float32(s)) for s in torch_scales)
        assert all(np.all(t.zero_points == 0) for t in q)
    # Over 32 inputs, tinyinfer's error against the float model is within torch's own dynamic-vs-float error
    # (max and mean; tinyinfer quantizes activations per row with 8 bits, torch per tensor with 7).
    loaded = torch.jit.load(files[case]).eval()
    ours, theirs, between = [], [], []
    with tinyinfer.Model(report.data) as m, torch.no_grad():
        for x in _inputs(case, 32):
            dyn, flt = loaded(x).numpy(), fmod(x).numpy()
            y = m.run(x.numpy())[0]
            ours.append(float(np.abs(y - flt).max()))
            theirs.append(float(np.abs(dyn - flt).max()))
            between.append(float(np.abs(y - dyn).max()))
    assert min(theirs) > 0  # torch's int8 really differs from float (the checks below can fail)
    assert max(ours) <= max(theirs) and np.mean(ours) <= np.mean(theirs), (max(ours), max(theirs))
    assert max(between) <= 2 * max(theirs)


@pytest.mark.parametrize("case", ["static_script", "static_pc_trace"])
def test_static_quantized_archive_matches_torch(files, case):
    """torch.ao static quantization: activations quantized with torch's parameters (Quantize, round half to
    even), each quantized layer as Dequantize, the float op on the dequantized weights, Quantize to its output
    parameters: torch's own results, to the output quantization step."""
    report = tinyinfer.convert(files[case], input_shape=tm.CASES[case][2])
    loaded = torch.jit.load(files[case])
    step = tm.saved_module(case).fc.scale
    with tinyinfer.Model(report.data) as m, torch.no_grad():
        q = [t for t in m.tensors() if t.dtype == np.uint8 and t.scales is not None]
        assert q, "the activations are quantized"
        for x in _inputs(case, 16):
            y, ref = m.run(x.numpy())[0], loaded(x).numpy()
            assert float(np.abs(y - ref).max()) <= step * 1.001


def test_archive_reader_keeps_quantized_values(files):
    arc = ts.read_archive(files["mlp_dyn_pc_script"])
    packed = arc.root.state["fc1"].state["_packed_params"].state["_packed_params"]
    w, b = packed.state
    tw = tm.saved_module("mlp_dyn_pc_script").fc1.weight()
    assert isinstance(w, QuantizedTensor) and w.axis == 0
    np.testing.assert_array_equal(w.values, tw.int_repr().numpy())
    np.testing.assert_array_equal(w.scales, tw.q_per_channel_scales().numpy())


def test_converts_without_torch(files, tmp_path):
    """The recipe and the int8 archive convert and run in a process where `import torch` fails."""
    out = tmp_path / "out.npz"
    x = _inputs("mlp_dyn_script", 1)[0].numpy()
    np.save(tmp_path / "x.npy", x)
    code = f"""
import sys
sys.modules['torch'] = None
import numpy as np, tinyinfer
x = np.load({str(tmp_path / 'x.npy')!r})
ys = {{}}
for name, path in [('recipe', {files['mlp_recipe']!r}), ('dyn', {files['mlp_dyn_script']!r})]:
    r = tinyinfer.convert(path, input_shape=(1, 64))
    with tinyinfer.Model(r.data) as m:
        ys[name] = m.run(x)[0]
assert 'torch' not in sys.modules or sys.modules['torch'] is None
np.savez({str(out)!r}, **ys)
"""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)
    got = np.load(out)
    with torch.no_grad():
        ref = torch.jit.load(files["mlp_recipe"])(torch.from_numpy(x)).numpy()
    assert_close(got["recipe"], ref, rtol=1e-5, atol=1e-5)
    assert got["dyn"].shape == ref.shape


# ---------------------------------------------------------------------------------------------
# errors name the construct and the serialized line
# ---------------------------------------------------------------------------------------------

class _DataDependent(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x


class _UnknownOp(torch.nn.Module):
    def forward(self, x):
        return torch.cumsum(x, 1)


def test_data_dependent_control_flow_is_refused_with_its_line(tmp_path):
    p = str(tmp_path / "dd.pt")
    torch.jit.save(torch.jit.script(_DataDependent()), p)
    with pytest.raises(tinyinfer.UnsupportedOpError) as e:
        tinyinfer.convert(p, input_shape=(1, 4))
    msg = str(e.value)
    assert "code/__torch__" in msg and "`" in msg and ("gt" in msg or "if" in msg), msg


def test_unknown_op_is_refused_with_its_name_and_line(tmp_path):
    p = str(tmp_path / "u.pt")
    torch.jit.save(torch.jit.script(_UnknownOp()), p)
    with pytest.raises(tinyinfer.UnsupportedOpError, match=r"torch\.cumsum.*code/__torch__.*:\d+: `"):
        tinyinfer.convert(p, input_shape=(1, 4))


def test_input_shape_is_required(files):
    with pytest.raises(tinyinfer.InvalidArgumentError, match="input_shape"):
        tinyinfer.convert(files["mlp_script"])


def test_archive_with_foreign_global_is_refused(files, tmp_path):
    """A data.pkl naming a global outside the allow-list (os.system) is refused before anything runs."""
    src = files["mlp_script"]
    dst = str(tmp_path / "evil.pt")
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("/data.pkl"):
                data = data.replace(b"collections\nOrderedDict", b"os\nsystem")
            zout.writestr(info, data)
    with pytest.raises(tinyinfer.ModelFormatError, match="refusing"):
        tinyinfer.convert(dst, input_shape=(1, 64))


# ---------------------------------------------------------------------------------------------
# quantized state_dicts into the builder
# ---------------------------------------------------------------------------------------------

class TMLP(tnn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = tnn.Linear(64, 128)
        self.drop = tnn.Dropout(0.1)
        self.fc2 = tnn.Linear(128, 10)

    def forward(self, x):
        return self.fc2(self.drop(tnn.functional.relu(self.fc1(x))))


class TStatic(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(3, 4, 3)
        self.relu = tnn.ReLU()
        self.fc = tnn.Linear(4 * 6 * 6, 5)

    def forward(self, x):
        return self.fc(tnn.functional.flatten(self.relu(self.conv(x)), 1))


def _dequantized_float(qmod, float_cls):
    """A float torch module of class float_cls carrying qmod's dequantized weights (the reference)."""
    f = float_cls().eval()
    sd = {}
    for k, v in qmod.state_dict().items():
        if k.endswith("_packed_params._packed_params"):
            pre = k[:-len("_packed_params._packed_params")]
            sd[pre + "weight"] = v[0].dequantize()
            if v[1] is not None:
                sd[pre + "bias"] = v[1]
        elif isinstance(v, torch.Tensor) and v.is_quantized:
            sd[k] = v.dequantize()
        elif k in f.state_dict():
            sd[k] = v
    f.load_state_dict(sd, strict=False)
    return f


@pytest.mark.parametrize("case", ["mlp_dyn_sd", "mlp_dyn_pc_sd", "quint8_sd"])
def test_quantized_state_dict_into_linear(files, case):
    sd = load_state_dict(files[case])
    assert isinstance(sd["fc1.weight"], QuantizedTensor)
    net = TMLP()
    net.load_state_dict(sd)
    b = net.to_builder((2, 64))
    x = _inputs(case, 1)[0].repeat(2, 1)
    if case == "quint8_sd":
        qt = torch.load(files[case])["fc1.weight"]
        ref_mod = tm.MLP().eval()
        ref_sd = torch.load(files[case])
        ref_sd["fc1.weight"] = qt.dequantize()
        ref_mod.load_state_dict(ref_sd)
        assert sd["fc1.weight"].values.dtype == np.uint8 and int(sd["fc1.weight"].zero_points[0]) == 128
    else:
        ref_mod = _dequantized_float(tm.saved_module(case), tm.MLP)
    with b.load() as m:
        q = [t for t in m.tensors() if t.dtype == np.int8]
        assert len(q) == (1 if case == "quint8_sd" else 2)
        y = m.run(x.numpy())[0]
    with torch.no_grad():
        flt = ref_mod(x).numpy()
    # int8-dynamic against the float model with the same (dequantized) weights: only activation rounding
    assert float(np.abs(y - flt).max()) <= 0.02 * float(np.abs(flt).max())


@pytest.mark.parametrize("case", ["static_sd", "static_pc_sd"])
def test_static_quantized_state_dict(files, case):
    sd = load_state_dict(files[case])
    assert isinstance(sd["conv.weight"], QuantizedTensor) and isinstance(sd["fc.weight"], QuantizedTensor)
    assert "quant.scale" not in sd and "conv.scale" not in sd
    qmod = tm.saved_module(case)
    np.testing.assert_array_equal(sd["conv.weight"].values, qmod.conv.weight().int_repr().numpy())
    net = TStatic()
    net.load_state_dict(sd)
    x = _inputs(case, 1)[0]
    with net.to_builder(tm.CASES[case][2]).load() as m:
        y = m.run(x.numpy())[0]
    f = tm.StaticNet().eval()
    fsd = {"conv.weight": qmod.conv.weight().dequantize(), "conv.bias": qmod.conv.bias(),
           "fc.weight": qmod.fc.weight().dequantize(), "fc.bias": qmod.fc.bias()}
    f.load_state_dict(fsd, strict=False)
    f.quant = torch.nn.Identity()
    f.dequant = torch.nn.Identity()
    with torch.no_grad():
        flt = f(x).numpy()
        tq = qmod(x).numpy()
    # tinyinfer keeps activations in float32 (weights exactly torch's): closer to the float model than torch's
    # full-int8 run is, and within the int8-dynamic rounding of the Linear
    assert float(np.abs(y - flt).max()) <= max(float(np.abs(tq - flt).max()), 0.02 * float(np.abs(flt).max()))


# ---------------------------------------------------------------------------------------------
# tinyinfer.from_torch: live modules
# ---------------------------------------------------------------------------------------------

def test_from_torch_static_quantized():
    q = tm.saved_module("static_pc_sd")
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    with tinyinfer.from_torch(q, x) as m, torch.no_grad():
        assert float(np.abs(m.run(x.numpy())[0] - q(x).numpy()).max()) <= q.fc.scale * 1.001


@pytest.mark.parametrize("kind", ["float", "script", "trace", "dyn"])
def test_from_torch(kind):
    m = tm._seeded(tm.MLP)
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(3))
    if kind == "float":
        pytest.importorskip("onnx")
        mod = m
    elif kind == "script":
        mod = torch.jit.script(m)
    elif kind == "trace":
        mod = torch.jit.trace(m, x)
    else:
        mod = torch.ao.quantization.quantize_dynamic(m, {torch.nn.Linear}, dtype=torch.qint8)
    model = tinyinfer.from_torch(mod, x)
    try:
        with torch.no_grad():
            ref, flt = mod(x).numpy(), m(x).numpy()
        y = model.run(x.numpy())[0]
        if kind == "dyn":
            assert model.metadata.get("quantization") == "int8-dynamic"
            assert model.report.notes[0].endswith("torch.jit.trace + torch.jit.save")
            assert float(np.abs(y - ref).max()) <= 2 * float(np.abs(ref - flt).max())
        else:
            assert model.metadata.get("quantization") is None
            assert_close(y, ref, rtol=1e-5, atol=1e-5)
    finally:
        model.close()


# ---------------------------------------------------------------------------------------------
# hostile or broken archives: a tinyinfer error, never a crash or a hang
# ---------------------------------------------------------------------------------------------

def _with_code(src_path, dst_path, edit):
    """A copy of an archive whose code files pass through edit(name, text) -> text."""
    with zipfile.ZipFile(src_path) as zin, zipfile.ZipFile(dst_path, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if "/code/" in info.filename and info.filename.endswith(".py"):
                data = edit(info.filename, data.decode()).encode()
            zout.writestr(info.filename, data)
    return dst_path


@pytest.mark.parametrize("body, match", [
    ("    __import__('os').system('echo pwned')\n", "not defined"),
    ("    _z = torch.mul([0], 1099511627776)\n", "items"),
    ("    _z = torch.pow(10, 100000)\n", "power|256 bits"),
    ("    _z = torch.neg([1, 2])\n", "fails|neg"),
    ("    _z = [1][5]\n", "indexing"),
    ("    while True:\n      pass\n", "While"),
    ("    _z = " + "(" * 400 + "1" + ")" * 400 + "\n", "."),
])
def test_hostile_code_is_refused(files, tmp_path, body, match):
    def edit(name, text):
        if "class MLP(" in text:
            i = text.index("    fc2 = ")
            return text[:i] + body + text[i:]
        return text
    p = _with_code(files["mlp_script"], str(tmp_path / "h.pt"), edit)
    with pytest.raises(tinyinfer.TinyInferError, match=match):
        tinyinfer.convert(p, input_shape=(1, 64))


def test_recursive_code_is_refused(files, tmp_path):
    def edit(name, text):
        if "class MLP(" in text:
            return text.replace("    fc2 = self.fc2\n", "    fc2 = self.fc2\n    _r = (self).forward(x, )\n")
        return text
    p = _with_code(files["mlp_script"], str(tmp_path / "r.pt"), edit)
    with pytest.raises(tinyinfer.UnsupportedOpError, match="nest too deeply"):
        tinyinfer.convert(p, input_shape=(1, 64))


def test_truncated_and_garbled_archives_are_refused(files, tmp_path):
    data = open(files["mlp_dyn_script"], "rb").read()
    for cut in (len(data) // 3, len(data) - 30):
        with pytest.raises(tinyinfer.TinyInferError):
            tinyinfer.convert(data[:cut], format="torchscript", input_shape=(1, 64))
    p = _with_code(files["mlp_script"], str(tmp_path / "s.pt"), lambda n, t: t + "\n  def broken(:\n")
    with pytest.raises(tinyinfer.ModelFormatError, match="not valid TorchScript source"):
        tinyinfer.convert(p, input_shape=(1, 64))
