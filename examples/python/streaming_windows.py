"""Streaming audio with overlapping windows: each frame's features computed once.

A keyword-spotting-style model (built here with tinyinfer.GraphBuilder,
random He-initialized weights) classifies windows of 8 audio frames of 256
samples (16 kHz: 128 ms per window). Its backbone is a 1-D convolutional
feature extractor applied to every frame on its own (four convolutions of
width 9, stride 2, then the mean over time: 128 features per frame,
tensor "frame_features"); its head reads the 8 frames' features (one
vector of 1024) and gives 10 class probabilities ("probs").

A stream is cut into windows that overlap by 50% (a hop of 4 frames), so
every frame is in two windows. Run as one model, each window computes the
backbone on all 8 frames: every frame twice. With `Model.split` the
backbone runs only on the 4 new frames of each window and the features of
the 4 frames before are reused:

    backbone, head = model.split(at=["frame_features"])
    new = backbone.run(frames[-4:])                    # (4, 128): a session for 4 frames
    (probs,) = head.run(np.concatenate([kept, new]))   # (8, 128) -> (1, 10)

(`model.run(from_tensors={"frame_features": feats})` runs the same head
without splitting.) The example checks that both ways give the same
probabilities and prints the windows per second of each.

    python examples/python/streaming_windows.py [--seconds 10] [--threads 1] [--repeat 3]
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import tinyinfer  # noqa: E402

FRAME = 256       # samples per frame (16 ms at 16 kHz)
FRAMES = 8        # frames per window
HOP = 4           # frames per hop: windows overlap by 50%
FEATURES = 128    # features per frame
RATE = 16000


def he(rng, *shape, fan_in):
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def build(seed: int = 0) -> bytes:
    """Input 'frames' (8, 1, 256, 1): a window's frames as a batch of 1x256
    one-channel images; output 'probs' (1, 10); the backbone ends in
    'frame_features' (8, 128)."""
    rng = np.random.default_rng(seed)
    b = tinyinfer.GraphBuilder("streaming_kws")
    h = b.input("frames", (FRAMES, 1, FRAME, 1))
    cin = 1
    for i, cout in enumerate([32, 64, 96, FEATURES]):
        h = b.op("Conv2D", h, b.const(f"conv{i}.w", he(rng, cout, 1, 9, cin, fan_in=9 * cin)),
                 b.const(f"conv{i}.b", np.zeros(cout, np.float32)), padding=1, strides=[1, 2],
                 activation=1, name=f"conv{i}")
        cin = cout
    feats = b.op("Mean", h, axes=[1, 2], keep_dims=0, name="frame_features")          # (8, 128)
    w = b.op("Reshape", feats, shape=[1, FRAMES * FEATURES], name="window_features")   # (1, 1024)
    w = b.op("FullyConnected", w, b.const("fc1.w", he(rng, 128, FRAMES * FEATURES, fan_in=FRAMES * FEATURES)),
             b.const("fc1.b", np.zeros(128, np.float32)), activation=1, name="fc1")
    w = b.op("FullyConnected", w, b.const("fc2.w", he(rng, 10, 128, fan_in=128)),
             b.const("fc2.b", np.zeros(10, np.float32)), name="logits")
    b.output(b.op("Softmax", w, name="probs"))
    return b.to_bytes()


def audio(seconds: float, seed: int = 1) -> np.ndarray:
    """A test signal: a chirp with noise, as (n_frames, 1, 256, 1) frames."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE) // FRAME * FRAME
    t = np.arange(n) / RATE
    x = 0.5 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.05 * rng.standard_normal(n)
    return x.astype(np.float32).reshape(-1, 1, FRAME, 1)


def every_window(model, frames):
    """The whole model on every window: the backbone on all 8 frames each time."""
    out = []
    for start in range(0, len(frames) - FRAMES + 1, HOP):
        (p,) = model.run(frames[start:start + FRAMES])
        out.append(p)
    return out


def reusing(backbone, head, frames):
    """The backbone on the 4 new frames of each window, the features of the 4 before kept."""
    out = []
    (kept,) = backbone.run(frames[:HOP])                   # the first window's first half
    for start in range(0, len(frames) - FRAMES + 1, HOP):
        (new,) = backbone.run(frames[start + HOP:start + FRAMES])
        (p,) = head.run(np.concatenate([kept, new]))
        out.append(p)
        kept = new
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the test stream")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="passes over the stream per way (the best is kept)")
    a = ap.parse_args()
    frames = audio(a.seconds)
    with tinyinfer.load(build(), threads=a.threads) as model:
        backbone, head = model.split(at=["frame_features"])
        print(f"{len(frames)} frames of {FRAME} samples; windows of {FRAMES} frames, hop {HOP}; "
              f"backbone {backbone.num_ops} ops, head {head.num_ops} ops")
        full = every_window(model, frames)
        reused = reusing(backbone, head, frames)
        assert len(full) == len(reused)
        worst = max(float(np.max(np.abs(f - r))) for f, r in zip(full, reused))
        assert worst <= 1e-5, f"reused features give other probabilities (max difference {worst})"
        # one window through run(from_tensors=...) on the model itself gives the same
        (f8,) = backbone.run(frames[:FRAMES])
        (p,) = model.run(from_tensors={"frame_features": f8}, outputs=["probs"])
        assert np.max(np.abs(p - full[0])) <= 1e-5
        print(f"{len(full)} windows: the same probabilities both ways (max difference {worst:.1e})")

        def rate(fn, *args):
            best = float("inf")
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                fn(*args)
                best = min(best, time.perf_counter() - t0)
            return len(full) / best
        whole = rate(every_window, model, frames)
        reuse = rate(reusing, backbone, head, frames)
        print(f"whole model per window:      {whole:8.0f} windows/s")
        print(f"frame features reused:       {reuse:8.0f} windows/s  ({reuse / whole:.2f}x)")


if __name__ == "__main__":
    main()
