"""Times one model on one runtime in a fresh process and prints a JSON line:
load time, first run, latency percentiles, peak RSS. Used by run_suite.py.

    python bench/_worker.py RUNTIME PATH --batch B --threads T --runs N [--torch-arch mlp|encoder] [--quantize-dynamic]
"""

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_mb():
    """Peak RSS of this process (VmHWM: ru_maxrss would include the parent's
    peak from before the fork)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_input(shape, dtype, rng):
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape).astype(dtype)


def setup_tinyinfer(path, batch, threads):
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import tinyinfer
    t0 = time.perf_counter()
    m = tinyinfer.load(path, threads=threads)
    shapes = [(batch,) + t.shape[1:] for t in m.inputs]
    s = m.session(threads=threads, input_shapes=shapes)
    load = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    xs = [make_input(t.shape, t.dtype, rng) for t in s.inputs]
    return load, (lambda: s.run(xs)), (m, s)


def setup_litert(path, batch, threads):
    from ai_edge_litert.interpreter import Interpreter
    t0 = time.perf_counter()
    it = Interpreter(model_path=path, num_threads=threads)
    d = it.get_input_details()
    if batch != d[0]["shape"][0]:
        for inp in d:
            it.resize_tensor_input(inp["index"], [batch] + list(inp["shape"][1:]))
    it.allocate_tensors()
    load = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    d = it.get_input_details()
    xs = [(inp["index"], make_input(tuple(inp["shape"]), inp["dtype"], rng)) for inp in d]
    outs = [o["index"] for o in it.get_output_details()]

    def run():
        for i, x in xs:
            it.set_tensor(i, x)
        it.invoke()
        return [it.get_tensor(o) for o in outs]
    return load, run, it


def setup_onnxruntime(path, batch, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    t0 = time.perf_counter()
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    load = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    feeds = {}
    for i in sess.get_inputs():
        shape = [batch if (k == 0) else (d if isinstance(d, int) else 1) for k, d in enumerate(i.shape)]
        if isinstance(i.shape[0], int) and i.shape[0] != batch:
            raise SystemExit(json.dumps({"error": f"fixed batch {i.shape[0]} in the ONNX model"}))
        dt = {"tensor(float)": np.float32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8}[i.type]
        feeds[i.name] = make_input(tuple(shape), dt, rng)
    return load, (lambda: sess.run(None, feeds)), sess


def setup_torch(path, batch, threads, arch, qdynamic):
    import torch
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    sd = torch.load(path, weights_only=True)
    if arch == "mlp":
        model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
                                    torch.nn.ReLU(), torch.nn.Linear(128, 10), torch.nn.Softmax(-1))
        x = torch.randn(batch, 784)
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from encoder_block import EncoderBlock
        model = EncoderBlock()
        x = torch.randn(batch, 32, 128)
    model.load_state_dict(sd)
    model.eval()
    if qdynamic:
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    load = time.perf_counter() - t0

    def run():
        with torch.inference_mode():
            return model(x)
    return load, run, model


def main():
    p = argparse.ArgumentParser()
    p.add_argument("runtime")
    p.add_argument("path")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--torch-arch")
    p.add_argument("--quantize-dynamic", action="store_true")
    a = p.parse_args()
    rss0 = rss_mb()
    if a.runtime == "tinyinfer":
        load, run, keep = setup_tinyinfer(a.path, a.batch, a.threads)
    elif a.runtime == "litert":
        load, run, keep = setup_litert(a.path, a.batch, a.threads)
    elif a.runtime == "onnxruntime":
        load, run, keep = setup_onnxruntime(a.path, a.batch, a.threads)
    else:
        load, run, keep = setup_torch(a.path, a.batch, a.threads, a.torch_arch, a.quantize_dynamic)
    t0 = time.perf_counter()
    run()
    first = time.perf_counter() - t0
    for _ in range(min(20, a.runs)):
        run()
    times = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    t = np.array(times) * 1e6
    print(json.dumps({"load_ms": load * 1e3, "first_us": first * 1e6, "p50_us": float(np.median(t)),
                      "p90_us": float(np.percentile(t, 90)), "rss_mb": rss_mb(), "rss_before_load_mb": rss0}))


if __name__ == "__main__":
    main()
