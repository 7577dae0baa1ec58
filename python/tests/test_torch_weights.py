"""PyTorch weights: the readers (torch.save zip, legacy torch.save, safetensors),
tinyinfer.nn descriptions run against torch's own forward, hostile pickles,
load_state_dict errors, and the converter entry point.

Every file is made in tmp_path during the test: torch-made ones need torch
(pytest.importorskip), the crafted ones (hostile pickles, lying sizes) are
written opcode by opcode and need nothing but the standard library."""

import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import tinyinfer
from tinyinfer.convert import nn as tnn
from tinyinfer.convert import Report
from tinyinfer.convert import torch_weights as tw

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.dirname(HERE)


# ---------------------------------------------------------------------------------------------
# Crafting pickles and torch.save archives by hand (no torch needed)
# ---------------------------------------------------------------------------------------------

def _g(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _s(text):
    b = text.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _i(n):
    return b"\x8a\x08" + struct.pack("<q", n)  # LONG1, 8 bytes: any int64


def _tuple(*items):
    return b"(" + b"".join(items) + b"t"


def tensor_pickle(entries):
    """A data.pkl: OrderedDict name -> _rebuild_tensor_v2(storage, offset, size, stride),
    entries = {name: (storage_type, key, numel, offset, size, stride)}."""
    out = b"\x80\x02" + _g("collections", "OrderedDict") + b")R("
    for name, (stype, key, numel, off, size, stride) in entries.items():
        out += _s(name) + _g("torch._utils", "_rebuild_tensor_v2") + b"("
        out += _tuple(_s("storage"), _g("torch", stype), _s(key), _s("cpu"), _i(numel)) + b"Q"
        out += _i(off) + _tuple(*map(_i, size)) + _tuple(*map(_i, stride)) + b"\x89"
        out += _g("collections", "OrderedDict") + b")R" + b"tR"
    return out + b"u."


def torch_zip(path, data_pkl, storages=None, prefix="archive", byteorder=b"little", extra=None):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", data_pkl)
        if byteorder is not None:
            z.writestr(f"{prefix}/byteorder", byteorder)
        for k, v in (storages or {}).items():
            z.writestr(f"{prefix}/data/{k}", v)
        for k, v in (extra or {}).items():
            z.writestr(f"{prefix}/{k}", v)
    return path


def legacy_file(path, data_pkl, storages=()):
    """A legacy torch.save stream: magic, protocol, sys_info, data, keys, storages."""
    with open(path, "wb") as f:
        f.write(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2))
        f.write(pickle.dumps(1001, protocol=2))
        f.write(pickle.dumps({"protocol_version": 1001, "little_endian": True,
                              "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2))
        f.write(data_pkl)
        f.write(pickle.dumps([k for k, _, _ in storages], protocol=2))
        for _k, numel, raw in storages:
            f.write(struct.pack("<q", numel) + raw)
    return path


class _Evil:
    """Its pickle calls `fn(*args)` on load."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _payloads(marker):
    import subprocess as sp
    return {
        "os.system": _Evil(os.system, f"touch {marker}"),
        "builtins.eval": _Evil(eval, f"open({str(marker)!r}, 'w').close()"),
        "builtins.exec": _Evil(exec, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.call": _Evil(sp.call, ["touch", str(marker)]),
        "subprocess.Popen": _Evil(sp.Popen, ["touch", str(marker)]),
    }


# ---------------------------------------------------------------------------------------------
# Readers on crafted files (no torch)
# ---------------------------------------------------------------------------------------------

def test_crafted_zip_reads_views_and_dtypes(tmp_path):
    a = np.arange(12, dtype=np.float32)
    h = np.array([1.5, -2, 3], dtype=np.float16)
    bf = (np.array([1.0, -2.5, 3.25], np.float32).view(np.uint32) >> 16).astype(np.uint16)
    pkl = tensor_pickle({
        "m": ("FloatStorage", "0", 12, 1, (2, 3), (4, 2)),  # a strided view with an offset
        "t": ("FloatStorage", "0", 12, 0, (3, 2), (1, 3)),  # a transposed view of the same storage
        "e": ("FloatStorage", "0", 12, 2, (2, 2), (0, 1)),  # stride 0 (an expanded tensor)
        "h": ("HalfStorage", "1", 3, 0, (3,), (1,)),
        "b": ("BFloat16Storage", "2", 3, 0, (3,), (1,)),
        "s": ("LongStorage", "3", 1, 0, (), ()),
    })
    p = torch_zip(tmp_path / "c.pt", pkl, {"0": a.tobytes(), "1": h.tobytes(), "2": bf.tobytes(),
                                           "3": struct.pack("<q", 7)})
    sd = tw.load_state_dict(p)
    np.testing.assert_array_equal(sd["m"], np.lib.stride_tricks.as_strided(a[1:], (2, 3), (16, 8)))
    np.testing.assert_array_equal(sd["t"], a[:6].reshape(2, 3).T)
    np.testing.assert_array_equal(sd["e"], np.array([[2, 3], [2, 3]], np.float32))
    assert sd["h"].dtype == np.float16 and np.array_equal(sd["h"], h)
    assert sd["b"].dtype == np.float32 and np.array_equal(sd["b"], [1.0, -2.5, 3.25])
    assert sd["s"].shape == () and sd["s"] == 7
    # bytes work as well as paths, and the legacy stream of the same pickle too
    assert set(tw.load_state_dict(p.read_bytes())) == set(sd)


def test_crafted_legacy_reads(tmp_path):
    a = np.arange(6, dtype=np.float32)
    pkl = tensor_pickle({"w": ("FloatStorage", "0", 6, 0, (2, 3), (3, 1))})
    # legacy persistent ids have a sixth field (view metadata): rewrite the 5-tuple as a 6-tuple
    pkl = pkl.replace(_s("cpu") + _i(6) + b"t", _s("cpu") + _i(6) + b"Nt")
    p = legacy_file(tmp_path / "l.pt", pkl, [("0", 6, a.tobytes())])
    np.testing.assert_array_equal(tw.load_state_dict(p)["w"], a.reshape(2, 3))


def test_reader_needs_neither_torch_nor_safetensors(tmp_path):
    """The readers run with torch and safetensors made unimportable."""
    torch = pytest.importorskip("torch")
    sd = {"w": torch.randn(3, 4), "b": torch.randn(3).bfloat16(), "n": torch.tensor(3)}
    torch.save(sd, tmp_path / "z.pt")
    torch.save(sd, tmp_path / "l.pt", _use_new_zipfile_serialization=False)
    st = pytest.importorskip("safetensors.torch")
    st.save_file(sd, str(tmp_path / "s.safetensors"))
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['safetensors'] = None\n"
        f"sys.path.insert(0, {PYTHON_DIR!r})\n"
        "import numpy as np\n"
        "from tinyinfer.convert.torch_weights import load_state_dict\n"
        "for name in ('z.pt', 'l.pt', 's.safetensors'):\n"
        f"    d = load_state_dict(os.path.join({str(tmp_path)!r}, name))\n"
        f"    np.savez(os.path.join({str(tmp_path)!r}, name + '.npz'), **d)\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n")
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-c", "import os\n" + code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for name in ("z.pt", "l.pt", "s.safetensors"):
        got = np.load(tmp_path / (name + ".npz"))
        np.testing.assert_array_equal(got["w"], sd["w"].numpy())
        np.testing.assert_array_equal(got["b"], sd["b"].float().numpy())
        assert int(got["n"]) == 3


# ---------------------------------------------------------------------------------------------
# Models described twice: torch.nn and tinyinfer.nn (the same code, the namespace as argument)
# ---------------------------------------------------------------------------------------------

def mlp(nn):
    return nn.Sequential(nn.Linear(20, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 32),
                         nn.GELU(), nn.Linear(32, 5), nn.LogSoftmax(dim=1))


def cnn(nn):
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(3, 2, padding=1, ceil_mode=True),
        nn.Conv2d(8, 16, 3, stride=2, padding=(1, 0)), nn.BatchNorm2d(16), nn.LeakyReLU(0.1),
        nn.AvgPool2d(2, padding=1, count_include_pad=False),
        nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
        nn.AvgPool2d(2, stride=1, padding=1),
        nn.Flatten(), nn.Dropout(), nn.Linear(16 * 4 * 4, 10), nn.Softmax(dim=1))


def depthwise(nn):
    return nn.Sequential(
        nn.Conv2d(4, 8, 3, padding="same", dilation=2, groups=4), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False), nn.Hardswish(),
        nn.Conv2d(8, 12, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 3))


def deconv(nn):
    return nn.Sequential(
        nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1, groups=2), nn.Tanh(),
        nn.ConvTranspose2d(4, 2, 3, dilation=2, bias=False), nn.Sigmoid())


def text(nn):
    return nn.Sequential(nn.Embedding(50, 16), nn.LayerNorm(16), nn.Linear(16, 32), nn.GELU(approximate="tanh"),
                         nn.Linear(32, 16), nn.LayerNorm(16, elementwise_affine=False), nn.Softmax(dim=-1))


def misc(nn):
    return nn.Sequential(
        nn.Conv2d(3, 6, 4, padding="same", padding_mode="reflect"), nn.PReLU(6),
        nn.Conv2d(6, 6, 2, padding="same"), nn.SiLU(), nn.BatchNorm2d(6),
        nn.Conv2d(6, 6, 3, padding=1, groups=3, bias=False), nn.Softmax(dim=1),
        nn.AdaptiveAvgPool2d((2, 2)), nn.Flatten(), nn.Linear(24, 4), nn.PReLU(), nn.Tanh())


def seq1d(nn):
    return nn.Sequential(nn.BatchNorm1d(4), nn.Flatten(), nn.Linear(24, 3))


def _residual(nn, F, cat):
    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c)
            self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(c)

        def forward(self, x):
            y = F.relu(self.bn1(self.conv1(x)))
            return F.relu(x + self.bn2(self.conv2(y)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
            self.blocks = nn.ModuleList([Block(8), Block(8)])
            self.side = nn.Conv2d(8, 4, 1)
            self.head = nn.Linear(12, 5)

        def forward(self, x):
            x = self.stem(x)
            for b in self.blocks:
                x = b(x)
            z = cat([x, self.side(x)], 1).mean((2, 3))
            return F.softmax(self.head(z) * 2.0 - 1.0, dim=1)

    return Net()


def _convnext(nn, F, cat):
    class Block(nn.Module):
        """A ConvNeXt block: depthwise 7x7, channels-last LayerNorm and MLP, residual."""

        def __init__(self, c):
            super().__init__()
            self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
            self.norm = nn.LayerNorm(c, eps=1e-6)
            self.pw1 = nn.Linear(c, 4 * c)
            self.pw2 = nn.Linear(4 * c, c)

        def forward(self, x):
            y = self.dw(x).permute(0, 2, 3, 1)
            y = self.pw2(F.gelu(self.pw1(self.norm(y))))
            return x + y.permute(0, 3, 1, 2)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 2, stride=2)
            self.block = Block(8)

        def forward(self, x):
            return self.block(self.stem(x))

    return Net()


def _custom(nn, F, param, buffer):
    class Net(nn.Module):
        """Parameters and buffers of its own, squeeze-excitation, permutes, reshapes, reversed operands."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.scale = param(1, 4, 1, 1)
            self.register_buffer("shift", buffer(4, 1, 1))
            self.norm = nn.LayerNorm(4)

        def forward(self, x):
            y = self.conv(x) * self.scale + self.shift
            y = y * F.sigmoid(y.mean((2, 3), keepdim=True))
            s = self.norm(y.flatten(2).transpose(1, 2))  # (N, H*W, C)
            return (1.0 - s).view(s.size(0), -1) / 2.0

    return Net()


def custom(nn):
    if nn is tnn:
        return _custom(tnn, tnn.functional, lambda *s: tnn.Parameter(s), lambda *s: s)
    import torch
    return _custom(nn, torch.nn.functional, lambda *s: torch.nn.Parameter(torch.randn(*s)),
                   lambda *s: torch.randn(*s))


def residual(nn):
    if nn is tnn:
        return _residual(tnn, tnn.functional, tnn.cat)
    import torch
    return _residual(nn, torch.nn.functional, torch.cat)


def convnext(nn):
    if nn is tnn:
        return _convnext(tnn, tnn.functional, tnn.cat)
    import torch
    return _convnext(nn, torch.nn.functional, torch.cat)


MODELS = {
    "mlp": (mlp, (3, 20)),
    "cnn": (cnn, (2, 3, 16, 16)),
    "depthwise": (depthwise, (2, 4, 12, 12)),
    "deconv": (deconv, (2, 6, 5, 5)),
    "text": (text, (2, 7)),
    "misc": (misc, (2, 3, 9, 10)),
    "seq1d": (seq1d, (2, 4, 6)),
    "residual": (residual, (2, 3, 8, 8)),
    "convnext": (convnext, (1, 3, 12, 12)),
    "custom": (custom, (2, 3, 7, 6)),
}


def torch_model(name, seed=0):
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    factory, _ = MODELS[name]
    m = factory(torch.nn)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
                mod.num_batches_tracked.fill_(17)
            if isinstance(mod, torch.nn.PReLU):
                mod.weight.uniform_(-0.5, 0.5)
            if isinstance(mod, torch.nn.LayerNorm) and mod.weight is not None:
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
    return m.eval()


def model_input(name, seed=1):
    torch = pytest.importorskip("torch")
    _, shape = MODELS[name]
    g = torch.Generator().manual_seed(seed)
    if name == "text":
        return torch.randint(0, 50, shape, generator=g)
    return torch.randn(shape, generator=g)


def save_weights(model, path, fmt):
    torch = pytest.importorskip("torch")
    if fmt == "zip":
        torch.save(model.state_dict(), path)
    elif fmt == "legacy":
        torch.save(model.state_dict(), path, _use_new_zipfile_serialization=False)
    elif fmt == "safetensors":
        st = pytest.importorskip("safetensors.torch")
        st.save_file(model.state_dict(), str(path))
    elif fmt == "safetensors_model":
        st = pytest.importorskip("safetensors.torch")
        st.save_model(model, str(path))
    return path


# ---------------------------------------------------------------------------------------------
# (1) reading what torch and safetensors write
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["zip", "legacy", "safetensors", "safetensors_model"])
@pytest.mark.parametrize("name", ["mlp", "cnn", "depthwise", "deconv", "text", "misc"])
def test_state_dict_equals_torch(tmp_path, name, fmt):
    m = torch_model(name)
    p = save_weights(m, tmp_path / f"{name}.bin", fmt)
    sd = tw.load_state_dict(p)
    ref = m.state_dict()
    assert list(sorted(sd)) == sorted(ref)
    for k, v in ref.items():
        assert sd[k].dtype == v.numpy().dtype, k
        np.testing.assert_array_equal(sd[k], v.numpy(), err_msg=k)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_torch_tensor_zoo(tmp_path, fmt):
    """Views, shared storages, 0-d, Parameters, and every dtype torch.save writes for state_dicts."""
    torch = pytest.importorskip("torch")
    base = torch.randn(5, 6)
    sd = OrderedDict([
        ("f32", torch.randn(2, 3)), ("param", torch.nn.Parameter(torch.randn(3))),
        ("view", base[1:, ::2]), ("t", base.t()), ("shared_row", base[2]), ("expanded", torch.randn(1, 3).expand(4, 3)),
        ("f16", torch.randn(4).half()), ("bf16", torch.randn(4).bfloat16()), ("f64", torch.randn(2).double()),
        ("i64", torch.tensor([1, -2, 3])), ("i32", torch.tensor([4, 5], dtype=torch.int32)),
        ("i16", torch.tensor([-7], dtype=torch.int16)), ("i8", torch.tensor([-8, 9], dtype=torch.int8)),
        ("u8", torch.tensor([200, 1], dtype=torch.uint8)), ("bool", torch.tensor([True, False])),
        ("u16", torch.tensor([1, 65535], dtype=torch.int32).to(torch.uint16)),
        ("scalar", torch.tensor(2.5)), ("empty", torch.zeros(0, 3)),
    ])
    p = tmp_path / "zoo.pt"
    torch.save(sd, p, _use_new_zipfile_serialization=(fmt == "zip"))
    got = tw.load_state_dict(p)
    assert list(got) == list(sd)
    for k, v in sd.items():
        v = v.detach()
        want = v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy()
        assert got[k].dtype == want.dtype and got[k].shape == want.shape, k
        np.testing.assert_array_equal(got[k], want, err_msg=k)


def test_checkpoint_dict_with_nested_state_dict(tmp_path):
    torch = pytest.importorskip("torch")
    m = torch_model("mlp")
    torch.save({"epoch": 3, "model_state_dict": m.state_dict()}, tmp_path / "ckpt.pt")
    sd, desc = tw.load_state_dict_with_info(tmp_path / "ckpt.pt")
    assert "model_state_dict" in desc and set(sd) == set(m.state_dict())
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "nothing.pt")
    with pytest.raises(tinyinfer.ModelFormatError, match="not a state_dict"):
        tw.load_state_dict(tmp_path / "nothing.pt")


def test_safetensors_fallback_reader(tmp_path, monkeypatch):
    """Without the safetensors package the small reader gives the same arrays (bf16 widened)."""
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    sd = {"a": torch.randn(3, 4), "b": torch.randn(5).bfloat16(), "c": torch.arange(6).reshape(2, 3),
          "d": torch.tensor([True, False]), "e": torch.randn(2).half(), "s": torch.tensor(1.5)}
    p = str(tmp_path / "w.safetensors")
    st.save_file(sd, p, metadata={"format": "pt"})
    with_pkg = tw.load_state_dict(p)
    monkeypatch.setattr(tw, "_safetensors_numpy", lambda: None)
    own = tw.load_state_dict(p)
    for k, v in sd.items():
        want = v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy()
        for got in (with_pkg, own):
            assert got[k].dtype == want.dtype and got[k].shape == want.shape
            np.testing.assert_array_equal(got[k], want)


# ---------------------------------------------------------------------------------------------
# (2) tinyinfer.nn + state_dict -> .tinf, against torch's forward in eval mode
# ---------------------------------------------------------------------------------------------

def run_tinf(path, x):
    with tinyinfer.load(path) as m:
        (y,) = m.run(np.ascontiguousarray(x))
    return y


def check_close(y, ref, bound=1e-5):
    assert y.shape == ref.shape, (y.shape, ref.shape)
    err = float(np.max(np.abs(y.astype(np.float64) - ref)))
    scale = float(np.max(np.abs(ref)))
    assert err <= bound * scale, f"max abs error {err:.3g} > {bound} * {scale:.3g}"
    return err / scale


RESULTS = {}


@pytest.mark.parametrize("name", list(MODELS))
def test_nn_matches_torch_forward(tmp_path, name):
    torch = pytest.importorskip("torch")
    m = torch_model(name)
    x = model_input(name)
    with torch.no_grad():
        ref = m(x).double().numpy()
    p = save_weights(m, tmp_path / "w.pt", "zip")
    net = MODELS[name][0](tnn)
    assert net.load_state_dict(tw.load_state_dict(p)) == ([], [])
    report = Report()
    net.save(tmp_path / "m.tinf", tuple(x.shape), report=report)
    with tinyinfer.load(tmp_path / "m.tinf") as tm:
        assert tm.inputs[0].shape == tuple(x.shape)  # torch's layout in ...
        assert tm.outputs[0].shape == tuple(ref.shape)  # ... and out
    RESULTS[name] = check_close(run_tinf(tmp_path / "m.tinf", x.numpy()), ref)
    assert sum(report.ops_out.values()) > 0 and sum(report.ops_in.values()) > 0


def _random_layer(rnd, torch):
    """A random Conv2d / MaxPool2d / AvgPool2d / ConvTranspose2d, described for torch and for tinyinfer."""
    kind = rnd.choice(["conv", "max", "avg", "deconv"])
    h, w = rnd.randint(3, 12), rnd.randint(3, 12)
    k, s = (rnd.randint(1, 4), rnd.randint(1, 4)), (rnd.randint(1, 3), rnd.randint(1, 3))
    if kind == "conv":
        g = rnd.choice([1, 2, 4])
        cin, cout = g * rnd.randint(1, 2), g * rnd.randint(1, 3)
        pad = rnd.choice(["same", "valid", 0, 1, (1, 2), (2, 0)])
        args = dict(stride=(1, 1) if pad == "same" else s, padding=pad, dilation=(rnd.randint(1, 2), rnd.randint(1, 2)),
                    groups=g, bias=rnd.random() < 0.7, padding_mode=rnd.choice(["zeros", "zeros", "reflect"]))
        return torch.nn.Conv2d(cin, cout, k, **args), tnn.Conv2d(cin, cout, k, **args), (2, cin, h, w)
    if kind == "deconv":
        g = rnd.choice([1, 2])
        cin, cout = g * rnd.randint(1, 2), g * rnd.randint(1, 2)
        d = (rnd.randint(1, 2), rnd.randint(1, 2))
        args = dict(stride=s, padding=(rnd.randint(0, 2), rnd.randint(0, 2)), groups=g, dilation=d,
                    output_padding=(rnd.randint(0, max(s[0], d[0]) - 1), rnd.randint(0, max(s[1], d[1]) - 1)),
                    bias=rnd.random() < 0.7)
        return torch.nn.ConvTranspose2d(cin, cout, k, **args), tnn.ConvTranspose2d(cin, cout, k, **args), (2, cin, h, w)
    p, ceil = (rnd.randint(0, k[0] // 2), rnd.randint(0, k[1] // 2)), rnd.random() < 0.5
    if kind == "max":
        return torch.nn.MaxPool2d(k, s, p, ceil_mode=ceil), tnn.MaxPool2d(k, s, p, ceil_mode=ceil), (2, 3, h, w)
    cip, div = rnd.random() < 0.5, rnd.choice([None, None, None, 3])
    return torch.nn.AvgPool2d(k, s, p, ceil, cip, div), tnn.AvgPool2d(k, s, p, ceil, cip, div), (2, 3, h, w)


def test_random_conv_pool_deconv_configurations_match_torch():
    """Stride, padding ('same', 'valid', ints, pairs, reflect), dilation, groups, ceil_mode,
    count_include_pad, divisor_override and output_padding, drawn at random (seeded)."""
    torch = pytest.importorskip("torch")
    import random
    rnd = random.Random(7)
    torch.manual_seed(7)
    checked = 0
    while checked < 120:
        tl, nl, shape = _random_layer(rnd, torch)
        x = torch.randn(shape)
        try:
            with torch.no_grad():
                ref = torch.nn.Sequential(tl).eval()(x).double().numpy()
        except RuntimeError:
            continue  # torch refuses the configuration for this input too
        if ref.size == 0:
            continue  # torch gives an empty tensor; the runtime has none
        net = tnn.Sequential(nl)
        net.load_state_dict(torch.nn.Sequential(tl).state_dict())
        with net.to_builder(shape).load() as m:
            (y,) = m.run(x.numpy())
        check_close(y, ref)
        checked += 1


def test_nn_graph_is_plain_and_the_core_folds_it(tmp_path):
    """The front end writes BatchNorm and activations as their own ops; the core's load-time passes fold and
    fuse them. Both the plain graph (optimize=False) and the optimized one match torch."""
    torch = pytest.importorskip("torch")
    m = torch_model("cnn")
    x = model_input("cnn")
    with torch.no_grad():
        ref = m(x).double().numpy()
    net = cnn(tnn)
    net.load_state_dict(m.state_dict())  # torch tensors are accepted directly
    report = Report()
    data = net.to_builder(tuple(x.shape), report=report).to_bytes()
    assert report.ops_out["BatchNorm"] == 3 and report.ops_out["Relu"] == 1 and report.ops_out["Relu6"] == 1
    assert not report.folded and not report.fused
    with tinyinfer.load(data, optimize=False) as plain:
        (y_plain,) = plain.run(x.numpy())
        assert sum(op.op == "BatchNorm" for op in plain.ops()) == 3
    with tinyinfer.load(data) as tm:
        (y,) = tm.run(x.numpy())
        ops = [op.op for op in tm.ops()]
        passes = tm.passes
    check_close(y_plain, ref)
    check_close(y, ref)
    assert "BatchNorm" not in ops and "Relu" not in ops and "Relu6" not in ops
    assert sum(p.startswith("fold BatchNorm") for p in passes) == 3
    assert any(p.startswith("fuse Relu ") for p in passes) and any(p.startswith("fuse Relu6 ") for p in passes)


def test_report_describes_the_conversion(tmp_path):
    m = torch_model("cnn")
    net = cnn(tnn)
    net.load_state_dict(m.state_dict())
    r = Report()
    r.data = net.to_builder((1, 3, 16, 16), report=r).to_bytes()
    assert r.ops_in["Conv2d"] == 3 and r.ops_in["Dropout"] == 1
    assert r.ops_out["Transpose"] == 1  # one, at the input: Flatten permutes the Linear instead
    assert any("Dropout" in d for d in r.dropped)
    notes = " ".join(r.notes)
    assert "OIHW -> OHWI" in notes and "Linear weight columns permuted" in notes
    # What the core does at load is part of the report.
    assert any(p.startswith("fold BatchNorm") for p in r.load_passes)
    assert any(p.startswith("fuse Relu ") for p in r.load_passes)
    assert "at load, the core's passes" in str(r)


def test_depthwise_and_transpose_layouts_reported():
    m = torch_model("depthwise")
    net = depthwise(tnn)
    net.load_state_dict(m.state_dict())
    r = Report()
    net.to_builder((1, 4, 12, 12), report=r)
    assert r.ops_out["DepthwiseConv2D"] == 2 and "[1, KH, KW, C*M]" in " ".join(r.notes)
    m = torch_model("deconv")
    net = deconv(tnn)
    net.load_state_dict(m.state_dict())
    r = Report()
    r.data = net.to_builder((1, 6, 5, 5), report=r).to_bytes()
    assert r.ops_out["TransposeConv2D"] == 4 and r.ops_out["Split"] == 1  # groups=2 -> Split + 2 + Concat
    # The BatchNorm after the first TransposeConv2D is the core's to fold at load, as after a Conv2D.
    assert r.ops_out["BatchNorm"] == 1 and not any("BatchNorm" in f for f in r.folded)
    assert any(p.startswith("fold BatchNorm") and "into TransposeConv2D" in p for p in r.load_passes), r.load_passes
    assert "IOHW -> [Cout, KH, KW, Cin]" in " ".join(r.notes)


def test_from_torch_module_as_architecture(tmp_path):
    torch = pytest.importorskip("torch")
    m = torch_model("depthwise")
    x = model_input("depthwise")
    with torch.no_grad():
        ref = m(x).double().numpy()
    p = save_weights(m, tmp_path / "w.safetensors", "safetensors")
    tinyinfer.convert(p, tmp_path / "m.tinf", architecture=m, input_shape=tuple(x.shape), verbose=False)
    check_close(run_tinf(tmp_path / "m.tinf", x.numpy()), ref)
    with pytest.raises(tinyinfer.UnsupportedOpError, match="own forward"):
        tnn.from_torch(torch_model("residual"))
    with pytest.raises(tinyinfer.UnsupportedOpError, match="own forward"):
        tinyinfer.convert(save_weights(torch_model("residual"), tmp_path / "r.pt", "zip"), tmp_path / "r.tinf",
                          architecture=torch_model("residual"), input_shape=(1, 3, 8, 8), verbose=False)


# ---------------------------------------------------------------------------------------------
# (3) hostile and broken files
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("payload", ["os.system", "builtins.eval", "builtins.exec", "subprocess.call",
                                     "subprocess.Popen"])
def test_hostile_zip_pickle_is_refused(tmp_path, payload):
    marker = tmp_path / "pwned"
    evil = _payloads(marker)[payload]
    pkl = pickle.dumps({"weight": evil}, protocol=2)
    p = torch_zip(tmp_path / "evil.pt", pkl)
    with pytest.raises(tinyinfer.ModelFormatError, match="refusing to load global .*: pickles can run code"):
        tw.load_state_dict(p)
    with pytest.raises(tinyinfer.ModelFormatError, match="refusing to load global"):
        tinyinfer.convert(p, tmp_path / "x.tinf", architecture=tnn.Linear(1, 1), input_shape=(1, 1), verbose=False)
    assert not marker.exists()
    assert not (tmp_path / "x.tinf").exists()


def test_refusal_names_the_global(tmp_path):
    marker = tmp_path / "pwned"
    p = torch_zip(tmp_path / "evil.pt", pickle.dumps(_payloads(marker)["builtins.eval"], protocol=2))
    with pytest.raises(tinyinfer.ModelFormatError, match=r"refusing to load global builtins\.eval"):
        tw.load_state_dict(p)
    p = torch_zip(tmp_path / "evil2.pt", pickle.dumps(_payloads(marker)["os.system"], protocol=4))
    with pytest.raises(tinyinfer.ModelFormatError, match=r"refusing to load global (os|posix|nt)\.system"):
        tw.load_state_dict(p)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_hostile_legacy_file_is_refused(tmp_path, protocol):
    marker = tmp_path / "pwned"
    p = legacy_file(tmp_path / "evil.pt", pickle.dumps({"w": _payloads(marker)["os.system"]}, protocol=protocol))
    with pytest.raises(tinyinfer.ModelFormatError, match="refusing to load global"):
        tw.load_state_dict(p)
    assert not marker.exists()


def test_hostile_header_pickle_in_legacy_file(tmp_path):
    """The magic-number pickle itself is hostile: refused before anything else."""
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pt"
    p.write_bytes(pickle.dumps(_payloads(marker)["builtins.exec"], protocol=2))
    with pytest.raises(tinyinfer.ModelFormatError, match="refusing to load global builtins.exec"):
        tw.load_state_dict(p)
    assert not marker.exists()


def test_raw_global_opcodes_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    code = f"open({str(marker)!r}, 'w').close()"
    global_op = b"\x80\x02" + _g("builtins", "exec") + _s(code) + b"\x85R."
    sb = code.encode()
    stack_global = (b"\x80\x04\x8c\x08builtins\x8c\x04exec\x93" + b"\x8c" + bytes([len(sb)]) + sb + b"\x85R.")
    inst = b"(" + b"i" + b"builtins\nexec\n" + b"."  # protocol 0 INST
    for i, pkl in enumerate([global_op, stack_global, inst]):
        p = torch_zip(tmp_path / f"g{i}.pt", pkl)
        with pytest.raises(tinyinfer.ModelFormatError, match="refusing to load global builtins.exec"):
            tw.load_state_dict(p)
        p = legacy_file(tmp_path / f"l{i}.pt", pkl)
        with pytest.raises(tinyinfer.ModelFormatError, match="refusing to load global builtins.exec"):
            tw.load_state_dict(p)
    assert not marker.exists()


def test_allowed_globals_cannot_be_rewritten(tmp_path):
    """BUILD on a stand-in (which would change it for later loads) is refused."""
    build = b"\x80\x02" + _g("torch._utils", "_rebuild_tensor_v2") + b"}" + _s("__doc__") + _s("x") + b"sb."
    slots = b"\x80\x02" + _g("torch", "FloatStorage") + b"N}" + _s("dtype") + _s("x") + b"s\x86b."
    for i, pkl in enumerate([build, slots]):
        with pytest.raises(tinyinfer.ModelFormatError, match="set the state"):
            tw.load_state_dict(torch_zip(tmp_path / f"b{i}.pt", pkl))
    with pytest.raises(tinyinfer.ModelFormatError, match="called torch.FloatStorage"):
        tw.load_state_dict(torch_zip(tmp_path / "c.pt", b"\x80\x02" + _g("torch", "FloatStorage") + b")R."))


def test_memo_bomb_and_extension_opcodes_are_refused(tmp_path):
    bomb = b"\x80\x02K\x01r\xff\xff\xff\x7f."  # LONG_BINPUT 2**31-1: CPython would size the memo by it
    with pytest.raises(tinyinfer.ModelFormatError, match="memo index"):
        tw.load_state_dict(torch_zip(tmp_path / "bomb.pt", bomb))
    ext = b"\x80\x02\x82\x01."  # EXT1
    with pytest.raises(tinyinfer.ModelFormatError, match="extension registry"):
        tw.load_state_dict(torch_zip(tmp_path / "ext.pt", ext))


def test_whole_pickled_module_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save(torch_model("mlp"), tmp_path / "whole.pt")
    with pytest.raises(tinyinfer.ModelFormatError, match="refusing to load global torch.nn.*state_dict"):
        tw.load_state_dict(tmp_path / "whole.pt")


def test_torchscript_archive_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    torch.jit.save(torch.jit.script(torch_model("mlp")), str(tmp_path / "ts.pt"))
    with pytest.raises(tinyinfer.ModelFormatError, match="TorchScript"):
        tw.load_state_dict(tmp_path / "ts.pt")


def _good_zip(tmp_path):
    a = np.arange(6, dtype=np.float32)
    return torch_zip(tmp_path / "good.pt", tensor_pickle({"w": ("FloatStorage", "0", 6, 0, (2, 3), (3, 1))}),
                     {"0": a.tobytes()}), a


def test_truncated_and_corrupt_zips(tmp_path):
    p, a = _good_zip(tmp_path)
    np.testing.assert_array_equal(tw.load_state_dict(p)["w"], a.reshape(2, 3))
    data = p.read_bytes()
    for cut in [10, len(data) // 3, len(data) // 2, len(data) - 30, len(data) - 1]:
        with pytest.raises(tinyinfer.ModelFormatError):
            tw.load_state_dict(data[:cut])
    # a flipped byte inside the stored storage: the CRC catches it
    i = data.index(a.tobytes()) + 5
    with pytest.raises(tinyinfer.ModelFormatError, match="cannot read zip entry"):
        tw.load_state_dict(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
    # garbage inside data.pkl
    j = data.index(b"_rebuild_tensor_v2")
    with pytest.raises(tinyinfer.ModelFormatError):
        tw.load_state_dict(data[:j] + b"\xff" * 8 + data[j + 8:])


def test_truncated_torch_files(tmp_path):
    torch = pytest.importorskip("torch")
    m = torch_model("cnn")
    for fmt in ("zip", "legacy"):
        data = save_weights(m, tmp_path / f"{fmt}.pt", fmt).read_bytes()
        for frac in (0.1, 0.5, 0.9, 0.999):
            with pytest.raises(tinyinfer.ModelFormatError):
                tw.load_state_dict(data[:int(len(data) * frac)])


def test_storage_sizes_that_lie(tmp_path):
    a = np.arange(6, dtype=np.float32).tobytes()
    cases = {
        "storage says 100 elements, entry has 6": ({"w": ("FloatStorage", "0", 100, 0, (2, 3), (3, 1))}, a),
        "storage says 2 elements, entry has 6": ({"w": ("FloatStorage", "0", 2, 0, (2,), (1,))}, a),
        "tensor reads past its storage": ({"w": ("FloatStorage", "0", 6, 0, (3, 3), (3, 1))}, a),
        "offset past the storage": ({"w": ("FloatStorage", "0", 6, 6, (1,), (1,))}, a),
        "negative stride": ({"w": ("FloatStorage", "0", 6, 5, (6,), (-1,))}, a),
        "negative size": ({"w": ("FloatStorage", "0", 6, 0, (-1,), (1,))}, a),
        "huge stride-0 expansion": ({"w": ("FloatStorage", "0", 6, 0, (1 << 40,), (0,))}, a),
    }
    for what, (entries, raw) in cases.items():
        p = torch_zip(tmp_path / "lie.pt", tensor_pickle(entries), {"0": raw})
        with pytest.raises(tinyinfer.ModelFormatError, match="lie|storage|negative|expand"):
            tw.load_state_dict(p)
    # a storage that is not in the archive at all
    p = torch_zip(tmp_path / "miss.pt", tensor_pickle({"w": ("FloatStorage", "7", 6, 0, (6,), (1,))}), {"0": a})
    with pytest.raises(tinyinfer.ModelFormatError, match="missing"):
        tw.load_state_dict(p)
    # a key that is not a plain name
    p = torch_zip(tmp_path / "key.pt", tensor_pickle({"w": ("FloatStorage", "../0", 6, 0, (6,), (1,))}), {"0": a})
    with pytest.raises(tinyinfer.ModelFormatError, match="not a plain name"):
        tw.load_state_dict(p)


def test_legacy_storage_sizes_that_lie(tmp_path):
    a = np.arange(6, dtype=np.float32).tobytes()
    pkl = tensor_pickle({"w": ("FloatStorage", "0", 6, 0, (6,), (1,))})
    pkl = pkl.replace(_s("cpu") + _i(6) + b"t", _s("cpu") + _i(6) + b"Nt")
    with pytest.raises(tinyinfer.ModelFormatError, match="lie"):
        tw.load_state_dict(legacy_file(tmp_path / "a.pt", pkl, [("0", 7, a)]))  # record says 7 elements
    with pytest.raises(tinyinfer.ModelFormatError, match="truncated"):
        tw.load_state_dict(legacy_file(tmp_path / "b.pt", pkl, [("0", 6, a[:-4])]))
    with pytest.raises(tinyinfer.ModelFormatError, match="does not match"):
        tw.load_state_dict(legacy_file(tmp_path / "c.pt", pkl, [("1", 6, a)]))


def test_legacy_storage_views(tmp_path):
    """Legacy persistent ids may carry view metadata (view key, offset, size): views of views stay flat."""
    a = np.arange(8, dtype=np.float32)

    def pid(key, numel, view):
        return _tuple(_s("storage"), _g("torch", "FloatStorage"), _s(key), _s("cpu"), _i(numel), view) + b"Q"

    def tensor(storage_pid, size):
        return (_g("torch._utils", "_rebuild_tensor_v2") + b"(" + storage_pid + _i(0) + _tuple(_i(size)) +
                _tuple(_i(1)) + b"\x89" + _g("collections", "OrderedDict") + b")R" + b"tR")

    pkl = (b"\x80\x02}(" + _s("whole") + tensor(pid("0", 8, b"N"), 8)
           + _s("view") + tensor(pid("0", 8, _tuple(_s("v1"), _i(2), _i(4))), 4)
           + _s("view_of_view") + tensor(pid("v1", 4, _tuple(_s("v2"), _i(1), _i(2))), 2) + b"u.")
    sd = tw.load_state_dict(legacy_file(tmp_path / "v.pt", pkl, [("0", 8, a.tobytes())]))
    np.testing.assert_array_equal(sd["whole"], a)
    np.testing.assert_array_equal(sd["view"], a[2:6])
    np.testing.assert_array_equal(sd["view_of_view"], a[3:5])
    bad = b"\x80\x02}(" + _s("v") + tensor(pid("0", 8, _tuple(_s("v1"), _i(6), _i(4))), 4) + b"u."
    with pytest.raises(tinyinfer.ModelFormatError, match="does not fit"):
        tw.load_state_dict(legacy_file(tmp_path / "b.pt", bad, [("0", 8, a.tobytes())]))


def test_big_endian_is_refused(tmp_path):
    p = torch_zip(tmp_path / "be.pt", tensor_pickle({"w": ("FloatStorage", "0", 1, 0, (1,), (1,))}),
                  {"0": b"\0\0\0\0"}, byteorder=b"big")
    with pytest.raises(tinyinfer.ModelFormatError, match="big-endian"):
        tw.load_state_dict(p)
    p = tmp_path / "be_legacy.pt"
    with open(p, "wb") as f:
        f.write(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2))
        f.write(pickle.dumps({"protocol_version": 1001, "little_endian": False}, protocol=2))
    with pytest.raises(tinyinfer.ModelFormatError, match="big-endian"):
        tw.load_state_dict(p)


def _safetensors(header, payload=b"", pad=True):
    h = json.dumps(header).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + payload


def test_corrupt_safetensors(tmp_path):
    ok = _safetensors({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8)
    np.testing.assert_array_equal(tw.load_state_dict(ok)["a"], [0, 0])
    bad = {
        "header longer than the file": struct.pack("<Q", 1 << 40) + b"{}",
        "not JSON": struct.pack("<Q", 4) + b"{abc",
        "offsets past the payload": _safetensors({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}},
                                                 b"\0" * 8),
        "shape and offsets disagree": _safetensors({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
                                                   b"\0" * 8),
        "unknown dtype": _safetensors({"a": {"dtype": "F8_E4M3", "shape": [8], "data_offsets": [0, 8]}}, b"\0" * 8),
        "overlap": _safetensors({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                 "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8),
        "negative dim": _safetensors({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8),
        "extra field": _safetensors({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1}},
                                    b"\0" * 8),
        "hole at the end": _safetensors({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 12),
        "duplicate key": struct.pack("<Q", 2 * 62 + 3) + (
            b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
            b'"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}') + b"\0" * 8,
    }
    for what, data in bad.items():
        with pytest.raises(tinyinfer.ModelFormatError):
            tw.load_state_dict(data)


def test_not_a_weights_file(tmp_path):
    for data in [b"hello world, not weights", b"\x08\x07junk"]:
        with pytest.raises(tinyinfer.ModelFormatError):
            tw.load_state_dict(data)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(tinyinfer.ModelFormatError, match="empty"):
        tw.load_state_dict(tmp_path / "empty.pt")


# ---------------------------------------------------------------------------------------------
# (4) load_state_dict: missing, unexpected, mismatched
# ---------------------------------------------------------------------------------------------

def _mlp_state():
    rng = np.random.default_rng(0)
    net = tnn.Sequential(tnn.Linear(4, 3), tnn.ReLU(), tnn.Linear(3, 2))
    sd = {"0.weight": rng.standard_normal((3, 4)), "0.bias": rng.standard_normal(3),
          "2.weight": rng.standard_normal((2, 3)), "2.bias": rng.standard_normal(2)}
    return net, sd


def test_missing_and_unexpected_keys_strict():
    net, sd = _mlp_state()
    del sd["2.bias"]
    sd["head.weight"] = np.zeros(3)
    with pytest.raises(tnn.StateDictError) as e:
        net.load_state_dict(sd)
    msg = str(e.value)
    assert 'Missing key(s) in state_dict: "2.bias"' in msg
    assert 'Unexpected key(s) in state_dict: "head.weight"' in msg
    assert msg.startswith("Error(s) in loading state_dict for Sequential")
    assert isinstance(e.value, RuntimeError) and isinstance(e.value, tinyinfer.TinyInferError)
    assert net[0].weight.data is None  # nothing was loaded


def test_strict_false_returns_the_keys():
    net, sd = _mlp_state()
    del sd["2.bias"]
    sd["extra"] = np.zeros(1)
    r = net.load_state_dict(sd, strict=False)
    assert r.missing_keys == ["2.bias"] and r.unexpected_keys == ["extra"]
    assert isinstance(r, tnn.IncompatibleKeys)
    with pytest.raises(tinyinfer.InvalidStateError, match="2.bias"):
        net.to_builder((1, 4))  # still missing a value


def test_shape_mismatch_names_key_and_shapes():
    net, sd = _mlp_state()
    sd["2.weight"] = np.zeros((5, 3))
    for strict in (True, False):
        with pytest.raises(tnn.StateDictError, match=r"size mismatch for 2\.weight: copying a param with shape "
                                                     r"\(5, 3\) from checkpoint, the shape in current model is "
                                                     r"\(2, 3\)"):
            net.load_state_dict(sd, strict=strict)


def test_data_parallel_prefix_hint():
    net, sd = _mlp_state()
    with pytest.raises(tnn.StateDictError, match="DataParallel"):
        net.load_state_dict({"module." + k: v for k, v in sd.items()})


def test_load_state_dict_with_a_torch_architecture_mismatch(tmp_path):
    """A torch file against a description with another layer name: torch's message."""
    torch = pytest.importorskip("torch")
    m = torch_model("mlp")
    p = save_weights(m, tmp_path / "w.pt", "zip")
    net = tnn.Sequential(OrderedDict([("fc", tnn.Linear(20, 64))]))
    with pytest.raises(tnn.StateDictError, match=r'Missing key\(s\) in state_dict: "fc.weight", "fc.bias"'):
        net.load_state_dict(p)


# ---------------------------------------------------------------------------------------------
# (5) the converter entry point
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["zip", "legacy", "safetensors"])
def test_convert_entry_point(tmp_path, fmt):
    torch = pytest.importorskip("torch")
    m = torch_model("cnn")
    x = model_input("cnn")
    with torch.no_grad():
        ref = m(x).double().numpy()
    src = save_weights(m, tmp_path / ("w.safetensors" if fmt == "safetensors" else "w.pt"), fmt)
    report = tinyinfer.convert(src, tmp_path / "m.tinf", architecture=cnn(tnn), input_shape=tuple(x.shape),
                               verbose=False)
    assert report.output_bytes == os.path.getsize(tmp_path / "m.tinf")
    assert report.ops_in["Conv2d"] == 3 and report.ops_out["Conv2D"] == 3
    assert any("read" in n for n in report.notes)
    check_close(run_tinf(tmp_path / "m.tinf", x.numpy()), ref)
    assert "converted" in str(report)


def test_convert_without_architecture_explains(tmp_path):
    torch = pytest.importorskip("torch")
    p = save_weights(torch_model("mlp"), tmp_path / "w.pt", "zip")
    with pytest.raises(tinyinfer.InvalidArgumentError) as e:
        tinyinfer.convert(p, tmp_path / "m.tinf", verbose=False)
    msg = str(e.value)
    assert "holds only weights" in msg and "architecture=" in msg and "0.weight [64, 20]" in msg
    assert not (tmp_path / "m.tinf").exists()
    with pytest.raises(tinyinfer.InvalidArgumentError, match="input_shape"):
        tinyinfer.convert(p, tmp_path / "m.tinf", architecture=mlp(tnn), verbose=False)
    with pytest.raises(tinyinfer.InvalidArgumentError, match="unknown option"):
        tinyinfer.convert(p, tmp_path / "m.tinf", architecture=mlp(tnn), input_shape=(1, 20), bogus=1,
                          verbose=False)


def test_supported_ops_is_documented():
    assert {"Linear", "Conv2d", "ConvTranspose2d", "BatchNorm2d", "BatchNorm1d", "LayerNorm", "Embedding", "ReLU",
            "ReLU6", "LeakyReLU", "GELU", "Sigmoid", "Tanh", "Hardswish", "Softmax", "MaxPool2d", "AvgPool2d",
            "AdaptiveAvgPool2d", "Flatten", "Dropout", "Identity", "Sequential"} <= set(tnn.SUPPORTED_OPS)
    for name in tnn.SUPPORTED_OPS:
        assert hasattr(tnn, name), name


def test_unsupported_configurations_say_why():
    net = tnn.Sequential(tnn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"))
    net.load_state_dict({"0.weight": np.zeros((4, 3, 3, 3)), "0.bias": np.zeros(4)})
    with pytest.raises(tinyinfer.UnsupportedOpError, match="circular"):
        net.to_builder((1, 3, 8, 8))
    net = tnn.Sequential(tnn.BatchNorm2d(3, track_running_stats=False))
    net.load_state_dict({"0.weight": np.ones(3), "0.bias": np.zeros(3)})
    with pytest.raises(tinyinfer.UnsupportedOpError, match="running statistics"):
        net.to_builder((1, 3, 4, 4))
    net = tnn.Sequential(tnn.Linear(4, 2))
    net.load_state_dict({"0.weight": np.zeros((2, 4)), "0.bias": np.zeros(2)})
    with pytest.raises(tinyinfer.ShapeError, match="in_features=4"):
        net.to_builder((1, 5))
    with pytest.raises(tinyinfer.InvalidArgumentError, match="symbolically"):
        net(np.zeros((1, 4), np.float32))
