"""What sharing one backbone between two heads gains (issue 18), on the
multi-task model of examples/python/multi_head.py (a CNN backbone on 64x64
RGB, a classifier head and an embedding head):

- separate: one model per head (each a `Model.subgraph` from the image to its
  head's output: what two separately exported models run), so the backbone
  runs twice per input;
- shared: the backbone once (`subgraph(["image"], ["features"])`), its
  features fed to both heads (`subgraph(["features"], [head])`);
- outputs: `model.run(x, outputs=["probs", "embedding"])` on the multi-task model.

Each arm is timed in short alternating rounds (median per-input time over the
rounds; the gain is the median over adjacent pairs of rounds), one thread.

    python bench/multi_head.py [--rounds 15] [--seconds 0.2] [--batch 1] [--json OUT]
"""

import argparse
import importlib.util
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
import tinyinfer  # noqa: E402

_spec = importlib.util.spec_from_file_location("multi_head_example",
                                               os.path.join(ROOT, "examples", "python", "multi_head.py"))
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)


def per_call(fn, n):
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--seconds", type=float, default=0.2, help="length of one arm's round")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--json")
    a = ap.parse_args()
    x = np.random.default_rng(1).random((a.batch, 64, 64, 3), dtype=np.float32)
    with tinyinfer.load(example.build(), threads=1) as model:
        classifier = model.subgraph(["image"], ["probs"])
        embedder = model.subgraph(["image"], ["embedding"])
        backbone = model.subgraph(["image"], ["features"])
        cls_head = model.subgraph(["features"], ["probs"])
        emb_head = model.subgraph(["features"], ["embedding"])

        def separate():
            return classifier.run(x) + embedder.run(x)

        def shared():
            (f,) = backbone.run(x)
            return cls_head.run(f) + emb_head.run(f)

        def outputs():
            return model.run(x, outputs=["probs", "embedding"])

        arms = {"separate": separate, "shared": shared, "outputs": outputs}
        ref = separate()
        for fn in (shared, outputs):
            assert all(np.array_equal(r, g) for r, g in zip(ref, fn())), "results differ"
        n = max(3, int(a.seconds / per_call(separate, 3)))
        times = {k: [] for k in arms}
        for r in range(a.rounds):
            order = list(arms) if r % 2 == 0 else list(reversed(arms))
            for k in order:
                times[k].append(per_call(arms[k], n))
        t_bb = float(np.median([per_call(lambda: backbone.run(x), n) for _ in range(5)]))
        t_cls = float(np.median([per_call(lambda: cls_head.run(np.zeros((a.batch, 128), np.float32)), n)
                                 for _ in range(5)]))
    sep, sh, out = (np.array(times[k]) for k in arms)
    row = {"batch": a.batch, "calls_per_round": n, "rounds": a.rounds,
           "separate_us": float(np.median(sep)) * 1e6, "shared_us": float(np.median(sh)) * 1e6,
           "outputs_us": float(np.median(out)) * 1e6, "gain_shared": float(np.median(sep / sh)),
           "gain_outputs": float(np.median(sep / out)), "backbone_us": t_bb * 1e6, "classifier_head_us": t_cls * 1e6,
           "isa": tinyinfer.info()["isa"]}
    print(f"batch {a.batch}: separate models {row['separate_us']:.0f} us, shared backbone {row['shared_us']:.0f} us "
          f"({row['gain_shared']:.2f}x), run(outputs=...) {row['outputs_us']:.0f} us ({row['gain_outputs']:.2f}x); "
          f"backbone alone {row['backbone_us']:.0f} us, classifier head alone {row['classifier_head_us']:.1f} us")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(row, f, indent=1)


if __name__ == "__main__":
    main()
