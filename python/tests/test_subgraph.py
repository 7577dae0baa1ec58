"""Running to and from intermediate tensors (tinyinfer.subgraph, issue 18):
`run(outputs=...)` returns intermediates by name and runs only the ops they
need, `run(from_tensors=...)` starts from given values, `Model.split` makes a
backbone and a head whose chained results are a full run's bit for bit.
References: plain numpy written here for built models; for the converted
digits models, LiteRT's own intermediate tensors (preserve_all_tensors) and
the full run of the same model; errors name the problem."""
import ctypes
import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

import tinyinfer as ti
from tinyinfer import InvalidArgumentError, _lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RNG = np.random.default_rng(1818)
W1 = RNG.standard_normal((16, 12)).astype(np.float32)
B1 = RNG.standard_normal(12).astype(np.float32)
W2 = RNG.standard_normal((12, 6)).astype(np.float32)
B2 = RNG.standard_normal(6).astype(np.float32)
W3 = RNG.standard_normal((12, 3)).astype(np.float32)


def mlp_bytes():
    """x -> hidden = relu(x W1 + b1) -> logits = hidden W2 + b2 -> probs = softmax;
    embed = tanh(hidden W3) (a second head on the same hidden layer)."""
    b = ti.GraphBuilder()
    x = b.input("x", (1, 16))
    h = b.op("FullyConnected", x, b.const("w1", np.ascontiguousarray(W1.T)), b.const("b1", B1), name="hidden")
    h = b.op("Relu", h, name="hidden_relu")
    logits = b.op("FullyConnected", h, b.const("w2", np.ascontiguousarray(W2.T)), b.const("b2", B2), name="logits")
    probs = b.op("Softmax", logits, name="probs")
    e = b.op("FullyConnected", h, b.const("w3", np.ascontiguousarray(W3.T)), None, name="embed_pre")
    embed = b.op("Tanh", e, name="embed")
    b.output(probs, embed)
    return b.to_bytes()


def np_hidden(x):
    return np.maximum(x @ W1 + B1, 0)


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_logits(h):
    return h @ W2 + B2


def exact(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y)


@pytest.fixture
def mlp():
    with ti.load(mlp_bytes(), optimize=False) as m:
        yield m


def test_outputs_by_name_match_numpy_and_the_full_run(mlp):
    x = RNG.standard_normal((1, 16)).astype(np.float32)
    probs, embed = mlp.run(x)
    hid, logits = mlp.run(x, outputs=["hidden_relu", "logits"])
    np.testing.assert_allclose(hid, np_hidden(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits, np_logits(np_hidden(x)), rtol=1e-5, atol=1e-4)
    exact(mlp.run(x, outputs=["probs", "embed"]), [probs, embed])   # the graph outputs by name: the same bits
    exact(mlp.run(x, outputs=["embed", "probs"]), [embed, probs])   # in the order asked
    # a graph input as an output
    exact(mlp.run(x, outputs=["x"]), [x])
    # only the ops needed run: the view of "hidden_relu" has 2 ops of 6
    v = mlp.subgraph(["x"], ["hidden_relu"])
    assert [o.op for o in v.ops()] == ["FullyConnected", "Relu"]
    assert v.passes[-1].startswith("subgraph: 2 of 6 ops")


def test_from_tensors_skips_upstream_and_matches_bit_for_bit(mlp):
    x = RNG.standard_normal((1, 16)).astype(np.float32)
    probs, embed = mlp.run(x)
    (hid,) = mlp.run(x, outputs=["hidden_relu"])
    exact(mlp.run(from_tensors={"hidden_relu": hid}), [probs, embed])
    exact(mlp.run(from_tensors={"hidden_relu": hid}, outputs=["probs"]), [probs])
    # a value of our own: numpy's softmax of numpy's logits
    h = np.abs(RNG.standard_normal((1, 12))).astype(np.float32)
    (p,) = mlp.run(from_tensors={"hidden_relu": h}, outputs=["probs"])
    np.testing.assert_allclose(p, np_softmax(np_logits(h)), rtol=1e-5, atol=1e-6)
    # the same through a session (its partial sessions are kept, then closed with it)
    with mlp.session() as s:
        for _ in range(3):
            exact(s.run(None, from_tensors={"hidden_relu": hid}), [probs, embed])
        assert len(s._partials) == 1
        partial = next(iter(s._partials.values()))
    assert partial._handle is None


def test_split_backbone_and_heads(mlp):
    x = RNG.standard_normal((1, 16)).astype(np.float32)
    full = mlp.run(x)
    backbone, head = mlp.split(at=["hidden_relu"])
    assert [t.name for t in backbone.inputs] == ["x"] and [t.name for t in backbone.outputs] == ["hidden_relu"]
    assert [t.name for t in head.inputs] == ["hidden_relu"] and [t.name for t in head.outputs] == ["probs", "embed"]
    assert backbone.num_ops + head.num_ops == mlp.num_ops
    (feats,) = backbone.run(x)
    exact(head.run(feats), full)
    # two heads on one backbone run
    cls = mlp.subgraph(["hidden_relu"], ["probs"])
    emb = mlp.subgraph(["hidden_relu"], ["embed"])
    exact(cls.run(feats) + emb.run(feats), full)
    # views outlive the model they were made from
    mlp.close()
    exact(head.run(backbone.run(x)), full)
    # a batch of 4 on the views (shape sessions)
    xb = RNG.standard_normal((4, 16)).astype(np.float32)
    (fb,) = backbone.run(xb)
    np.testing.assert_allclose(fb, np_hidden(xb), rtol=1e-5, atol=1e-5)
    assert head.run(fb)[0].shape == (4, 6)


def test_batch_runs_with_outputs():
    with ti.load(mlp_bytes(), optimize=False) as m:
        xb = RNG.standard_normal((3, 16)).astype(np.float32)
        (h,) = m.run(xb, outputs=["hidden_relu"])
        np.testing.assert_allclose(h, np_hidden(xb), rtol=1e-5, atol=1e-5)
        exact(m.run(from_tensors={"hidden_relu": h}), m.run(xb))


def test_errors_name_the_problem(mlp):
    x = np.zeros((1, 16), np.float32)
    with pytest.raises(InvalidArgumentError, match="no tensor of that name"):
        mlp.run(x, outputs=["nope"])
    with pytest.raises(InvalidArgumentError, match="no tensor of that name"):
        mlp.run(from_tensors={"nope": x})
    with pytest.raises(InvalidArgumentError, match="is a constant"):
        mlp.run(x, outputs=["w1"])
    with pytest.raises(InvalidArgumentError, match="asked twice"):
        mlp.run(x, outputs=["probs", "probs"])
    with pytest.raises(InvalidArgumentError, match="shape"):
        mlp.run(from_tensors={"hidden_relu": np.zeros((1, 11), np.float32)})
    with pytest.raises(InvalidArgumentError, match="takes float32, got complex64"):
        mlp.run(from_tensors={"hidden_relu": np.zeros((1, 12), np.complex64)})
    with pytest.raises(InvalidArgumentError, match="from_tensors must be a dict"):
        mlp.run(from_tensors=[("hidden_relu", x)])
    with pytest.raises(InvalidArgumentError, match="a tensor name is a str"):
        mlp.run(x, outputs=[3])
    with pytest.raises(InvalidArgumentError, match="unknown input name"):
        mlp.run({"hidden_relu": x}, outputs=["probs"])
    with pytest.raises(InvalidArgumentError, match="not among the given inputs"):
        mlp.subgraph(["hidden_relu"], ["probs", "x"])     # x is needed (as an output) but not given
    with pytest.raises(InvalidArgumentError, match="at least one"):
        mlp.split(at=[])


def test_from_tensors_that_do_not_cut_the_graph():
    # y = tanh(a) + x with a = relu(x): from {a} alone the Add still needs x
    b = ti.GraphBuilder()
    x = b.input("x", (2, 5))
    a = b.op("Relu", x, name="a")
    t = b.op("Tanh", a, name="t")
    b.output(b.op("Add", t, x, name="y"))
    with ti.load(b.to_bytes()) as m:
        xv = RNG.standard_normal((2, 5)).astype(np.float32)
        av = np.abs(RNG.standard_normal((2, 5))).astype(np.float32)
        with pytest.raises(InvalidArgumentError, match="need the model input 'x'.*do not cut the graph"):
            m.run(from_tensors={"a": av})
        (y,) = m.run({"x": xv}, from_tensors={"a": av})   # with x given too: tanh(a) + x
        np.testing.assert_allclose(y, np.tanh(av) + xv, rtol=1e-5, atol=1e-6)
        # the split's head takes x too (a skip connection over the cut)
        backbone, head = m.split(at=["a"])
        assert [t.name for t in head.inputs] == ["a", "x"]
        exact(head.run([backbone.run(xv)[0], xv]), m.run(xv))
        with pytest.raises(InvalidArgumentError, match="unknown input name.*go in from_tensors"):
            m.run({"x": xv, "a": av}, outputs=["y"])
        with pytest.raises(InvalidArgumentError, match="'x' is given both in inputs and in from_tensors"):
            m.run({"x": xv}, from_tensors={"x": xv})


def test_a_tensor_the_passes_removed():
    # the Relu is fused into the FullyConnected: 'hidden' no longer exists as loaded
    with ti.load(mlp_bytes()) as m:
        assert any(p.startswith("fuse Relu") for p in m.passes)
        with pytest.raises(InvalidArgumentError, match="optimize=False"):
            m.run(np.zeros((1, 16), np.float32), outputs=["hidden"])
    with ti.load(mlp_bytes(), optimize=False) as m:
        x = RNG.standard_normal((1, 16)).astype(np.float32)
        (h,) = m.run(x, outputs=["hidden"])
        np.testing.assert_allclose(h, x @ W1 + B1, rtol=1e-5, atol=1e-5)


def litert_tensors(path, x):
    """{name: value} of every tensor LiteRT computes for input x."""
    lite = pytest.importorskip("ai_edge_litert.interpreter")
    it = lite.Interpreter(model_path=path, experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    out = {}
    for d in it.get_tensor_details():
        try:
            out[d["name"]] = it.get_tensor(d["index"])
        except ValueError:
            pass
    return out


@pytest.mark.parametrize("name", ["digits_mlp.tflite", "digits_cnn.tflite"])
def test_converted_models_intermediates(name):
    path = os.path.join(ROOT, "models", name)
    with ti.load(path, cache=False) as m:
        spec = m.inputs[0]
        x = RNG.random(spec.shape).astype(np.float32)
        full = m.run(x)
        outs = {t.name for t in m.outputs}
        ops = m.ops()
        tensors = m.tensors()
        inter = [tensors[o.outputs[0]].name for o in ops if tensors[o.outputs[0]].name not in outs]
        assert len(inter) >= 2, inter
        values = m.run(x, outputs=inter)
        peer = litert_tensors(path, x)
        compared = 0
        for n, v in zip(inter, values):
            # every intermediate restarts the run: the rest of the graph from it gives the full run's bits
            exact(m.run(from_tensors={n: v}), full)
            if n in peer and peer[n].shape == v.shape:
                np.testing.assert_allclose(v, peer[n], rtol=1e-4, atol=1e-4)
                compared += 1
        backbone, head = m.split(at=[inter[len(inter) // 2]])
        exact(head.run(backbone.run(x)), full)
        assert compared >= 2, (name, compared, inter)   # the converters keep the source names


def test_int8_intermediate_dtype_is_checked():
    path = os.path.join(ROOT, "models", "digits_cnn.int8.tflite")
    with ti.load(path, cache=False) as m:
        tensors = m.tensors()
        ints = [tensors[o.outputs[0]] for o in m.ops() if tensors[o.outputs[0]].dtype == np.int8]
        assert ints
        t = ints[0]
        with pytest.raises(InvalidArgumentError, match="takes int8, got float32"):
            m.run(from_tensors={t.name: np.zeros(t.shape, np.float32)})
        x = RNG.integers(-128, 127, m.inputs[0].shape).astype(m.inputs[0].dtype) if m.inputs[0].dtype.kind == "i" \
            else RNG.random(m.inputs[0].shape).astype(m.inputs[0].dtype)
        (v,) = m.run(x, outputs=[t.name])
        assert v.dtype == np.int8
        exact(m.run(from_tensors={t.name: v}), m.run(x))


def test_c_api_checks_its_arguments(mlp):
    L = _lib.lib
    names = (ctypes.c_char_p * 1)(b"probs")
    out = _lib.ModelHandle()
    with pytest.raises(InvalidArgumentError, match="out_model is NULL"):
        L.tinf_model_subgraph(mlp.handle, None, 0, names, 1, 1, None)
    with pytest.raises(InvalidArgumentError, match="unknown flags"):
        L.tinf_model_subgraph(mlp.handle, None, 0, names, 1, 6, ctypes.byref(out))
    with pytest.raises(InvalidArgumentError, match="n_outputs"):
        L.tinf_model_subgraph(mlp.handle, None, 0, names, 0, 1, ctypes.byref(out))
    with pytest.raises(InvalidArgumentError, match="input names are NULL"):
        L.tinf_model_subgraph(mlp.handle, None, 1, names, 1, 1, ctypes.byref(out))
    with pytest.raises(InvalidArgumentError, match="output name 0 is NULL"):
        L.tinf_model_subgraph(mlp.handle, None, 0, (ctypes.c_char_p * 1)(None), 1, 1, ctypes.byref(out))
    with pytest.raises(InvalidArgumentError, match="count -1 out of range"):
        L.tinf_model_subgraph(mlp.handle, names, -1, names, 1, 1, ctypes.byref(out))
    with pytest.raises(InvalidArgumentError, match="model is NULL"):
        L.tinf_model_subgraph(None, None, 0, names, 1, 1, ctypes.byref(out))
    L.tinf_model_subgraph(mlp.handle, None, 0, names, 1, 1, ctypes.byref(out))
    L.tinf_model_free(out)


def test_hash64():
    L = _lib.lib
    h = ctypes.c_uint64()

    def hash_of(b, seed=0):
        L.tinf_hash64(b, len(b), seed, ctypes.byref(h))
        return h.value

    data = RNG.integers(0, 256, 100_003).astype(np.uint8).tobytes()
    assert hash_of(data) == hash_of(bytes(data))
    assert hash_of(data) != hash_of(data, seed=1)
    seen = {hash_of(b"")}
    for i in range(0, len(data), 997):           # one bit flipped anywhere, lengths around every tail size
        flipped = bytearray(data)
        flipped[i] ^= 1
        seen.add(hash_of(bytes(flipped)))
        seen.add(hash_of(data[:i + 1]))
    assert len(seen) == 1 + 2 * len(range(0, len(data), 997))
    assert hash_of(data[:64] + b"\0") != hash_of(data[:64])   # zero padding does not hide the length
    L.tinf_hash64(None, 0, 0, ctypes.byref(h))
    with pytest.raises(InvalidArgumentError, match="data is NULL"):
        L.tinf_hash64(None, 5, 0, ctypes.byref(h))
    with pytest.raises(InvalidArgumentError, match="out_hash is NULL"):
        L.tinf_hash64(data, 5, 0, None)


# -- the hash's definition, transcribed from Sources/TinyInferShims/hash.c's
# comment and scalar code independently of its vector variants: eight 64-bit
# lanes over 64-byte stripes (little-endian words), lane i += lo32(w_i ^ k_i)
# * hi32(w_i ^ k_i), lane i^1 += w_i; a scramble after every 16 full stripes,
# after the last full stripe and after the zero-padded tail; keys are
# splitmix64 steps from the seed; length and seed enter the final mix.
M64 = (1 << 64) - 1
HP1, HP2, HP3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9


def _mix64(x):
    x ^= x >> 33
    x = (x * HP2) & M64
    x ^= x >> 29
    x = (x * HP3) & M64
    return x ^ (x >> 32)


def reference_hash64(data: bytes, seed: int = 0) -> int:
    import struct
    key, acc, k = [], [], seed ^ HP3
    for i in range(8):
        k = (k + HP1) & M64
        key.append(_mix64(k))
        acc.append(((i + 1) * HP2) & M64)

    def stripe(chunk):
        w = struct.unpack("<8Q", chunk)
        for i in range(8):
            d = w[i] ^ key[i]
            acc[i] = (acc[i] + (d & 0xFFFFFFFF) * (d >> 32)) & M64
            acc[i ^ 1] = (acc[i ^ 1] + w[i]) & M64

    def scramble():
        for i in range(8):
            a = acc[i] ^ (acc[i] >> 47) ^ key[i]
            acc[i] = (a * HP1) & M64

    full, rest = divmod(len(data), 64)
    for s in range(full):
        stripe(data[64 * s:64 * s + 64])
        if (s + 1) % 16 == 0 or s + 1 == full:
            scramble()
    if rest:
        stripe(data[64 * full:] + bytes(64 - rest))
        scramble()
    h = _mix64(((len(data) * HP1) & M64) ^ seed)
    for i in range(8):
        h = (_mix64(h ^ acc[i]) + key[i]) & M64
    return _mix64(h)


# Lengths around every tail size, block (16 stripes) and stripe boundary.
HASH_LENGTHS = [0, 1, 7, 8, 63, 64, 65, 127, 128, 129, 191, 1000, 1023, 1024, 1025, 1087, 1088, 2047, 2048, 2049,
                3136, 4095, 4097, 64 * 33 + 5]
HASH_SEEDS = [0, 1, 0x123456789ABCDEF, M64]


def test_hash64_matches_the_python_transcription():
    L = _lib.lib
    h = ctypes.c_uint64()
    data = RNG.integers(0, 256, 5000).astype(np.uint8).tobytes()
    buf = ctypes.create_string_buffer(data, len(data))
    for n in HASH_LENGTHS:
        for seed in HASH_SEEDS:
            for off in (0, 3):   # misaligned starts too
                L.tinf_hash64(ctypes.byref(buf, off), n, seed, ctypes.byref(h))
                assert h.value == reference_hash64(data[off:off + n], seed), (n, seed, off)


HASH_CHILD = """
import ctypes, json, sys
import numpy as np
import tinyinfer
from tinyinfer import _lib
data = np.random.default_rng(18).integers(0, 256, 3 << 20).astype(np.uint8).tobytes()
buf = ctypes.create_string_buffer(data, len(data))
h = ctypes.c_uint64()
out = {"isa": tinyinfer.info()["isa"], "hashes": []}
for n in [int(a) for a in sys.argv[1].split(",")]:
    for seed in [int(a) for a in sys.argv[2].split(",")]:
        for off in (0, 5):
            _lib.lib.tinf_hash64(ctypes.byref(buf, off), n, seed, ctypes.byref(h))
            out["hashes"].append(h.value)
print(json.dumps(out))
"""


def test_hash64_is_the_same_at_every_cpu_level():
    """The value is stored on disk (prepack image checksums, conversion cache
    keys): every level's variant must give the definition's value."""
    levels = ["baseline", "avx2", "avx512"] if platform.machine() in ("x86_64", "AMD64") else ["baseline", "dotprod"]
    detected = ti.info()["isa_detected"]
    levels = levels[:levels.index(detected) + 1]
    big = [65536, 100_003, 1 << 20, 3 << 20]
    lengths = HASH_LENGTHS + big
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
    results = {}
    for level in levels:
        env["TINYINFER_ISA"] = level
        r = subprocess.run([sys.executable, "-c", HASH_CHILD, ",".join(map(str, lengths)), ",".join(map(str, HASH_SEEDS))],
                           env=env, capture_output=True, text=True, check=True)
        got = json.loads(r.stdout)
        assert got["isa"] == level
        results[level] = got["hashes"]
    data = np.random.default_rng(18).integers(0, 256, 3 << 20).astype(np.uint8).tobytes()
    expect = []
    for n in lengths:
        for seed in HASH_SEEDS:
            for off in (0, 5):
                expect.append(reference_hash64(data[off:off + n], seed) if n < 200_000 else None)
    for level, got in results.items():
        assert got == results[levels[0]], f"{level} differs from {levels[0]}"
        for g, e in zip(got, expect):
            if e is not None:
                assert g == e, level


def test_flag_is_the_headers():
    import re
    header = open(os.path.join(ROOT, "include", "tinyinfer.h")).read()
    m = re.search(r"typedef enum tinf_subgraph_flag \{\s*TINF_SUBGRAPH_ADD_GRAPH_INPUTS = (\d+)\s*\}", header)
    assert m and int(m.group(1)) == _lib.SUBGRAPH_ADD_GRAPH_INPUTS


def test_partial_sessions_are_bounded_and_shared_by_threads():
    import threading
    from tinyinfer.subgraph import MAX_PARTIAL_SESSIONS
    # a chain of 12 Tanh/Exp ops: each intermediate a possible output
    b = ti.GraphBuilder()
    h = b.input("x", (2, 6))
    names = []
    for i in range(12):
        h = b.op("Tanh" if i % 2 == 0 else "Exp", h, name=f"t{i}")
        names.append(f"t{i}")
    b.output(h)
    x = RNG.standard_normal((2, 6)).astype(np.float32)
    ref, v = {}, x.astype(np.float64)
    for i, n in enumerate(names):
        v = np.tanh(v) if i % 2 == 0 else np.exp(v)
        ref[n] = v
    with ti.load(b.to_bytes()) as m:
        s = m.session()
        first = None
        for n in names:
            (y,) = s.run(x, outputs=[n])
            np.testing.assert_allclose(y, ref[n], rtol=1e-5, atol=1e-6)
            if first is None:
                first = next(iter(s._partials.values()))
        assert len(s._partials) == MAX_PARTIAL_SESSIONS
        assert first._handle is None                       # the least recently used was closed
        errors = []

        def work(k):
            r = np.random.default_rng(k)
            try:
                for _ in range(40):
                    n = names[int(r.integers(len(names)))]
                    (y,) = m.run(x, outputs=[n])
                    if not np.allclose(y, ref[n], rtol=1e-5, atol=1e-6):
                        errors.append(n)
            except Exception as e:  # reported below: the test fails
                errors.append(e)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        s.close()


def test_split_models_save_and_load_back(tmp_path):
    x = RNG.standard_normal((1, 16)).astype(np.float32)
    xb = RNG.standard_normal((3, 16)).astype(np.float32)
    for optimize in (False, True):
        with ti.load(mlp_bytes(), optimize=optimize) as m:
            full, fullb = m.run(x), m.run(xb)
            backbone, head = m.split(at=["hidden_relu"])
            n_back, n_head = backbone.save(tmp_path / "backbone.tinf"), head.save(tmp_path / "head.tinf")
            assert n_back == os.path.getsize(tmp_path / "backbone.tinf") and n_head > 0
            feats = backbone.run(x)
            with ti.load(tmp_path / "backbone.tinf") as b2, ti.load(tmp_path / "head.tinf") as h2:
                assert [t.name for t in b2.inputs] == [t.name for t in backbone.inputs]
                assert [t.name for t in b2.outputs] == [t.name for t in backbone.outputs]
                assert [t.name for t in h2.outputs] == ["probs", "embed"]
                exact(b2.run(x), feats)                    # bit for bit the view's
                exact(h2.run(b2.run(x)), full)             # and the chain the full model's
                exact(h2.run(b2.run(xb)), fullb)           # other batch sizes too
                # only the view's weights are in the file: the backbone holds w1 and b1 alone
                consts = {t.name for t in b2.tensors() if t.kind == "constant"}
                assert consts == {"w1", "b1"}, consts
            # a whole model saves too, and a numpy check of the saved head
            with ti.load(m.to_bytes()) as again:
                exact(again.run(x), full)
            (p,) = ti.load(head.to_bytes()).run(feats, outputs=["probs"])
            np.testing.assert_allclose(p, np_softmax(np_logits(np_hidden(x))), rtol=1e-5, atol=1e-5)


def test_save_refuses_control_flow_and_checks_arguments(tmp_path):
    with ti.load(mlp_bytes()) as m:
        n = ctypes.c_size_t()
        _lib.lib.tinf_model_serialize(m.handle, None, 0, ctypes.byref(n))
        with pytest.raises(InvalidArgumentError):
            _lib.lib.tinf_model_serialize(m.handle, ctypes.create_string_buffer(8), 8, ctypes.byref(n))
        with pytest.raises(InvalidArgumentError):
            _lib.lib.tinf_model_serialize(m.handle, None, 8, ctypes.byref(n))
        with pytest.raises(InvalidArgumentError):
            _lib.lib.tinf_model_serialize(m.handle, None, 0, None)
        with pytest.raises(InvalidArgumentError):
            _lib.lib.tinf_model_serialize(None, None, 0, ctypes.byref(n))
    from test_control_flow import _if_model
    with _if_model().load() as m:
        with pytest.raises(ti.UnsupportedOpError, match="control-flow"):
            m.save(tmp_path / "if.tinf")
        assert not os.path.exists(tmp_path / "if.tinf")


def test_streaming_windows_example_runs():
    """examples/python/streaming_windows.py runs as written: the reused frame
    features give the whole model's probabilities (it asserts so itself)."""
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
    p = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "python", "streaming_windows.py"),
                        "--seconds", "1", "--repeat", "1"], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "the same probabilities both ways" in p.stdout and "windows/s" in p.stdout


def test_multi_head_example_runs():
    """examples/python/multi_head.py runs as written: separate models, the
    split backbone and run(outputs=...) give the same values bit for bit (it
    asserts so itself) and it reports both timings."""
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
    p = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "python", "multi_head.py"), "--runs", "2"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "bit-identical" in p.stdout and "backbone once, two heads" in p.stdout
