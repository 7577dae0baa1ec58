"""tinyinfer.compare / python -m tinyinfer compare, the --json outputs and
scripts/compare_json.py, and the plots: accuracy and agreement against a
numpy forward pass written here, the CLI's JSON against the documented
schema, the images' formats."""

import base64
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tinyinfer
from tinyinfer import InvalidArgumentError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "python")}


def mlp(path, w1, b1, w2, b2):
    b = tinyinfer.GraphBuilder("mlp")
    x = b.input("x", (1, 32))
    h = b.op("FullyConnected", x, b.const("w1", w1), b.const("b1", b1), activation=1)
    y = b.op("FullyConnected", h, b.const("w2", w2), b.const("b2", b2))
    b.output(b.op("Softmax", y))
    b.save(path)


def numpy_mlp(x, w1, b1, w2, b2):
    h = np.maximum(x @ w1.T + b1, 0)
    return (h @ w2.T + b2).argmax(1)


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    d = tmp_path_factory.mktemp("variants")
    rng = np.random.default_rng(7)
    w1, b1 = rng.standard_normal((48, 32)).astype(np.float32), rng.standard_normal(48).astype(np.float32)
    w2, b2 = rng.standard_normal((10, 48)).astype(np.float32), rng.standard_normal(10).astype(np.float32)
    noisy = [w + 0.6 * rng.standard_normal(w.shape).astype(np.float32) for w in (w1, b1, w2, b2)]
    a, b = str(d / "a.tinf"), str(d / "b.tinf")
    mlp(a, w1, b1, w2, b2)
    mlp(b, *noisy)
    x = rng.standard_normal((200, 4, 8)).astype(np.float32)      # another layout than the models' (1, 32)
    flat = x.reshape(200, 32).astype(np.float64)
    ref_a = numpy_mlp(flat, w1, b1, w2, b2)
    ref_b = numpy_mlp(flat, *[v.astype(np.float64) for v in noisy])
    labels = ref_a.copy()
    labels[::4] = (labels[::4] + 1) % 10                          # 25% of the labels disagree with model a
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", labels)
    return {"dir": d, "a": a, "b": b, "x": x, "labels": labels, "ref_a": ref_a, "ref_b": ref_b}


def test_compare_records_against_numpy(variants):
    v = variants
    recs = tinyinfer.compare([v["a"], v["b"]], data=v["x"], labels=v["labels"], names=["float", "noisy"],
                             rounds=3, seconds=0.15)
    a, b = recs
    assert [a["name"], b["name"]] == ["float", "noisy"] and a["runtime"] == "tinyinfer"
    assert a["accuracy"] == pytest.approx(np.mean(v["ref_a"] == v["labels"]))
    assert b["accuracy"] == pytest.approx(np.mean(v["ref_b"] == v["labels"]))
    assert a["agreement"] == 1.0 and a["output_rel_error"] == 0.0
    assert b["agreement"] == pytest.approx(np.mean(v["ref_a"] == v["ref_b"]))
    assert 0 < b["agreement"] < 1 and b["output_rel_error"] > 0
    for r in recs:
        assert r["file_bytes"] == os.path.getsize(r["path"])
        assert r["runs"] == len(r["latencies_us"]) > 0
        assert 0 < r["p50_us"] <= r["p90_us"] <= r["p99_us"]
        assert r["p50_us"] == pytest.approx(np.percentile(r["latencies_us"], 50))
        assert r["throughput_per_s"] > 0 and r["cpu_percent"] > 0
        # weights (float32) plus their repacked copy plus the arena
        assert r["library_bytes"] >= (48 * 32 + 48 + 10 * 48 + 10) * 4 + r["arena_bytes"]
        assert r["energy_j_per_inference"] > 0
        if r["energy_source"] != "RAPL":
            assert r["energy_source"].startswith("estimate") and r["notes"]["energy"]
        if r["peak_rss_bytes"] is not None:
            assert r["peak_rss_bytes"] >= r["rss_added_bytes"] >= 0
    table = tinyinfer.compare_table(recs)
    assert "float" in table and "noisy" in table and "p50 us" in table


def test_compare_without_data_and_argument_errors(variants):
    v = variants
    recs = tinyinfer.compare([v["a"], v["a"]], rounds=1, seconds=0.05)
    assert recs[1]["agreement"] == 1.0 and recs[0]["accuracy"] is None and recs[0]["notes"]["accuracy"] == "no labels"
    with pytest.raises(InvalidArgumentError):
        tinyinfer.compare([v["a"]], data=np.zeros((3, 31), np.float32))
    with pytest.raises(InvalidArgumentError):
        tinyinfer.compare([v["a"]], labels=v["labels"])
    with pytest.raises(InvalidArgumentError):
        tinyinfer.compare([])
    with pytest.raises(InvalidArgumentError):
        tinyinfer.compare([v["a"]], names=["x", "y"])
    with pytest.raises(InvalidArgumentError):
        tinyinfer.compare([v["a"]], data=str(v["dir"] / "missing.npy"))


def test_compare_against_litert(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from tinyinfer.datasets import load_digits_28x28
    x, y = load_digits_28x28()
    split = np.load(os.path.join(ROOT, "models", "digits_split.npz"))
    xs, ys = x[split["test"]][:120], y[split["test"]][:120]
    t = str(tmp_path / "mlp.tinf")
    tinyinfer.convert(os.path.join(ROOT, "models", "digits_mlp.tflite"), t)
    recs = tinyinfer.compare([t, os.path.join(ROOT, "models", "digits_mlp.tflite"),
                              os.path.join(ROOT, "models", "digits_mlp.int8.tflite")], data=xs, labels=ys,
                             rounds=2, seconds=0.1)
    assert [r["runtime"] for r in recs] == ["tinyinfer", "LiteRT", "LiteRT"]
    # The same float model in both runtimes: the same predictions.
    assert recs[1]["agreement"] == 1.0 and recs[1]["accuracy"] == recs[0]["accuracy"] > 0.9
    assert recs[2]["agreement"] > 0.95 and recs[1]["library_bytes"] is None
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=os.path.join(ROOT, "models", "digits_mlp.tflite"))
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    pred = []
    for k in range(len(xs)):
        it.set_tensor(i["index"], xs[k].reshape(i["shape"]).astype(np.float32))
        it.invoke()
        pred.append(it.get_tensor(o["index"]).argmax())
    assert recs[1]["accuracy"] == pytest.approx(np.mean(np.array(pred) == ys))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "tinyinfer", *args], capture_output=True, text=True, env=ENV,
                          cwd=ROOT, timeout=300)


def check_envelope(doc, kind):
    assert doc["schema"] == "tinyinfer-results/1" and doc["kind"] == kind
    assert doc["tinyinfer"]["version"] == tinyinfer.__version__
    assert doc["tinyinfer"]["isa"] == tinyinfer.info()["isa"]
    assert doc["machine"]["cores"] == os.cpu_count() and doc["machine"]["machine"]
    assert doc["created"].endswith("Z")


def test_compare_cli_json_and_regression_script(variants, tmp_path):
    v = variants
    out = tmp_path / "c.json"
    r = run_cli("compare", f"float={v['a']}", f"noisy={v['b']}", "--data", str(v["dir"] / "x.npy"), "--labels",
                str(v["dir"] / "y.npy"), "--seconds", "0.1", "--rounds", "2", "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "float" in r.stdout and "noisy" in r.stdout
    doc = json.load(open(out))
    check_envelope(doc, "compare")
    assert doc["threads"] == 1
    recs = {x["name"]: x for x in doc["results"]}
    assert recs["float"]["accuracy"] == pytest.approx(np.mean(v["ref_a"] == v["labels"]))
    assert "latencies_us" not in recs["float"]
    # The regression script: the same file is no regression; a slower, less accurate copy is.
    script = os.path.join(ROOT, "scripts", "compare_json.py")
    same = subprocess.run([sys.executable, script, str(out), str(out)], capture_output=True, text=True)
    assert same.returncode == 0 and "0 regression(s)" in same.stdout
    worse = json.loads(json.dumps(doc))
    worse["results"][0]["p50_us"] *= 1.2
    worse["results"][1]["accuracy"] -= 0.02
    worse["results"][1]["throughput_per_s"] *= 0.97            # within 5%
    wpath = tmp_path / "worse.json"
    json.dump(worse, open(wpath, "w"))
    res = subprocess.run([sys.executable, script, str(out), str(wpath)], capture_output=True, text=True)
    assert res.returncode == 1, res.stdout
    flagged = [ln.split()[1:3] for ln in res.stdout.splitlines() if ln.startswith("REGRESSION")]
    assert sorted(flagged) == [["float", "p50_us"], ["noisy", "accuracy"]]
    res = subprocess.run([sys.executable, script, str(out), str(wpath), "--threshold", "25"], capture_output=True,
                         text=True)
    assert res.returncode == 1 and "noisy" in res.stdout and "p50_us" not in res.stdout   # 2 points > 0.5
    res = subprocess.run([sys.executable, script, str(out), str(wpath), "--threshold", "25", "--accuracy-drop", "3"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert subprocess.run([sys.executable, script, str(out), str(bad)], capture_output=True).returncode == 2


def test_bench_json(variants, tmp_path):
    out = tmp_path / "b.json"
    r = run_cli("bench", variants["a"], "--runs", "50", "--profile", "--json", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.load(open(out))
    check_envelope(doc, "bench")
    (res,) = doc["results"]
    assert res["runs"] == 50 and res["ops"] == 3
    assert res["latency_us"]["p50"] <= res["latency_us"]["p99"]
    assert [p["op"] for p in res["profile"]] == ["FullyConnected", "FullyConnected", "Softmax"]


def test_plots_png_and_html(variants, tmp_path):
    pytest.importorskip("matplotlib")
    v = variants
    png, html = tmp_path / "c.png", tmp_path / "c.html"
    recs = tinyinfer.compare([v["a"], v["b"]], data=v["x"], labels=v["labels"], rounds=1, seconds=0.05)
    from tinyinfer import plots
    plots.compare_report(recs, str(png))
    plots.compare_report(recs, str(html))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = html.read_text()
    assert text.count("data:image/png;base64,") == 2 and "<table>" in text and "a.tinf" in text
    img = text.split("data:image/png;base64,")[1].split("'")[0]
    assert base64.b64decode(img)[:4] == b"\x89PNG"
    r = run_cli("inspect", "--memory", v["a"], "--plot", str(tmp_path / "arena.png"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "arena.png").read_bytes()[:4] == b"\x89PNG"
    r = run_cli("bench", v["a"], "--runs", "30", "--profile", "--plot", str(tmp_path / "bench.html"))
    assert r.returncode == 0, r.stderr
    assert "data:image/png;base64," in (tmp_path / "bench.html").read_text()


def test_compare_against_onnxruntime():
    pytest.importorskip("onnxruntime")
    onnx_path = os.path.join(ROOT, "bench", "models", "mlp.float32.onnx")
    tinf_path = os.path.join(ROOT, "bench", "models", "mlp.float32.tinf")
    if not (os.path.exists(onnx_path) and os.path.exists(tinf_path)):
        pytest.skip("no bench models (bench/make_models.py)")
    recs = tinyinfer.compare([tinf_path, onnx_path], rounds=1, seconds=0.05)
    assert [r["runtime"] for r in recs] == ["tinyinfer", "onnxruntime"]
    # the same float model: the same top-1 classes on the random inputs, outputs equal to float rounding
    assert recs[1]["agreement"] == 1.0 and recs[1]["output_rel_error"] < 1e-5
