"""tinyinfer on a quantize_dynamic'd TorchScript MLP against torch running its
own quantize_dynamic model: one thread, batch 1 and 32.

    python bench/torch_bench.py [--repeat 2000] [--json out.json]

The MLP is 784-512-256-10 with ReLU (float weights from a fixed seed). torch
runs `torch.jit.script(quantize_dynamic(mlp))` (qint8 weights, fbgemm); that
same archive is written with torch.jit.save and converted by tinyinfer
(without torch: torch's int8 weights and scales are kept), the converted model
runs the same inputs. Latency is the median over `repeat` runs after a
warm-up, per call (model.run / module(x) under torch.no_grad, the inputs
already in memory), the two runtimes timed in alternating blocks of 100
calls (the same machine load for both). Needs torch.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import torch  # noqa: E402
import tinyinfer  # noqa: E402
from _report import cpu_name  # noqa: E402


def medians_us(fns, repeat: int, block: int = 100):
    """The median time per call of each of `fns`, `repeat` calls each, timed
    in alternating blocks of `block` calls after a warm-up of each: on a
    shared machine both runtimes then see the same load, and the ratio is
    taken under one set of conditions (a block's first call, after the other
    runtime evicted some of its weights from the caches, is one sample in a
    hundred: the median does not see it)."""
    for fn in fns:
        for _ in range(max(20, repeat // 10)):
            fn()
    times = [[] for _ in fns]
    clock = time.perf_counter
    while len(times[0]) < repeat:
        n = min(block, repeat - len(times[0]))
        for fn, t in zip(fns, times):
            for _ in range(n):
                t0 = clock()
                fn()
                t.append(clock() - t0)
    return [statistics.median(t) * 1e6 for t in times]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=2000)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256),
                              torch.nn.ReLU(), torch.nn.Linear(256, 10)).eval()
    qmodel = torch.jit.script(torch.ao.quantization.quantize_dynamic(mlp, {torch.nn.Linear}, dtype=torch.qint8))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "mlp_dyn.pt")
        torch.jit.save(qmodel, path)
        report = tinyinfer.convert(path, input_shape=(1, 784))
    rows = []
    with tinyinfer.Model(report.data, threads=1) as model:
        for batch in (1, 32):
            x = torch.randn(batch, 784, generator=torch.Generator().manual_seed(batch))
            xn = x.numpy().copy()
            y = model.run(xn)[0]
            with torch.no_grad():
                ref = qmodel(x).numpy()
                t_torch, t_tiny = medians_us([lambda: qmodel(x), lambda: model.run(xn)], args.repeat)
            rows.append(dict(batch=batch, tinyinfer_us=round(t_tiny, 1), torch_us=round(t_torch, 1),
                             speedup=round(t_torch / t_tiny, 2), max_abs_diff=float(np.abs(y - ref).max())))
    info = dict(cpu=cpu_name(), torch=torch.__version__, tinyinfer=tinyinfer.__version__,
                isa=tinyinfer.info()["isa"], threads=1, model="MLP 784-512-256-10, quantize_dynamic qint8",
                rows=rows)
    print(f"CPU: {info['cpu']} (tinyinfer {info['isa']}), torch {info['torch']}, one thread")
    print(f"{'batch':>5} {'tinyinfer us':>13} {'torch us':>9} {'speedup':>8} {'max |diff|':>11}")
    for r in rows:
        print(f"{r['batch']:>5} {r['tinyinfer_us']:>13.1f} {r['torch_us']:>9.1f} {r['speedup']:>7.2f}x "
              f"{r['max_abs_diff']:>11.5f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(info, f, indent=1)


if __name__ == "__main__":
    main()
