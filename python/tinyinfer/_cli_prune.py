"""`python -m tinyinfer prune SRC -o DST --method magnitude|wanda|nm|structured --sparsity 0.8 [--pattern 2:4] [--calib FILE]`
(docs/pruning.md). Registered by __main__.py."""

from __future__ import annotations

import os


def add_parser(sub) -> None:
    p = sub.add_parser("prune", help="prune a float32 .tinf: magnitude, wanda, N:M (sparse kernels, smaller file) or structured (fewer channels)")
    p.add_argument("src")
    p.add_argument("-o", "--output")
    p.add_argument("--method", default="magnitude", choices=["magnitude", "wanda", "nm", "structured"])
    p.add_argument("--sparsity", type=float,
                   help="fraction of weights to zero, in [0, 1) (magnitude, wanda); of channels to remove (structured)")
    p.add_argument("--pattern", help="N:M for --method nm, e.g. 2:4")
    p.add_argument("--scope", default="global", choices=["global", "layer", "sensitivity"],
                   help="magnitude: one threshold, the same sparsity per layer, or per-layer by sensitivity")
    p.add_argument("--criterion", default="l2", choices=["l2", "l1"],
                   help="structured without --calib: rank channels by the L2 or L1 norm of their filters")
    p.add_argument("--channel-multiple", type=int,
                   help="structured: keep a multiple of N channels per group (default 8 where a depthwise "
                        "convolution reads them, else 1)")
    p.add_argument("--calib", help="representative inputs: .npy, .npz (input names, or x and y) or a directory of .npy")
    p.add_argument("--ls-correction", action="store_true",
                   help="wanda: refit the kept weights by least squares on the calibration activations")
    p.add_argument("--labels", help=".npy of labels for --calib (reports accuracy)")
    p.set_defaults(fn=run)


def run(args) -> int:
    import tinyinfer
    calib = args.calib
    if calib is not None and args.labels:
        calib = (calib, args.labels)
    tag = "s" if args.method == "structured" else ""
    tag += args.pattern.replace(":", "of") if args.pattern else f"{int(round((args.sparsity or 0) * 100))}"
    dst = args.output or os.path.splitext(args.src)[0] + f"_pruned{tag}.tinf"
    tinyinfer.prune(args.src, dst, method=args.method, sparsity=args.sparsity, pattern=args.pattern, calib=calib,
                    scope=args.scope, criterion=args.criterion,
                    channel_multiple=args.channel_multiple, ls_correction=args.ls_correction, verbose=True)
    return 0
