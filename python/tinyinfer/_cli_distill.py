"""`python -m tinyinfer distill TEACHER --student mlp:HIDDEN[,HIDDEN] | shrink:WIDTH --data X.npy [--labels Y.npy] -o student.tinf
[--quantize int8-static] [--epochs N]` (docs/distillation.md). Registered by __main__.py."""

from __future__ import annotations

import os
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("distill", help="train a small student from a teacher model (needs tinyinfer[train])")
    p.add_argument("teacher", help="the teacher: .tinf (or anything tinyinfer.load takes)")
    p.add_argument("--student", required=True,
                   help="mlp:HIDDEN[,HIDDEN...] (e.g. mlp:64 or mlp:128,64), or shrink:WIDTH (e.g. shrink:0.5: the "
                        "teacher's architecture with WIDTH of its channels, from its kept weights)")
    p.add_argument("--data", required=True, help=".npy of inputs, items along axis 0, shaped as the teacher's input")
    p.add_argument("--labels", help=".npy of class labels (optional: without, soft targets only)")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--quantize", choices=["fp16", "int8-dynamic", "int8-static", "int4"])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--alpha", type=float, default=0.7, help="weight of the soft-target loss (1 - alpha: labels)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", help="where teacher outputs are cached (default: the tinyinfer cache folder)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(fn=run)


def parse_student(spec: str):
    """'mlp:128,64' -> ("mlp", [128, 64]); 'shrink:0.5' -> ("shrink", 0.5); ValueError for anything else."""
    kind, _, rest = spec.partition(":")
    if kind == "shrink":
        try:
            width = float(rest)
        except ValueError:
            raise ValueError(f"--student {spec!r}: shrink:WIDTH takes a fraction, e.g. shrink:0.5") from None
        if not 0.0 < width <= 1.0:
            raise ValueError(f"--student {spec!r}: the width must be in (0, 1]")
        return "shrink", width
    if kind != "mlp":
        raise ValueError(f"--student {spec!r}: mlp:HIDDEN[,HIDDEN...] or shrink:WIDTH "
                         f"(bring another nn.Module through tinyinfer.distill.distill)")
    try:
        hidden = [int(h) for h in rest.split(",") if h.strip()]
    except ValueError:
        raise ValueError(f"--student {spec!r}: hidden widths must be integers, e.g. mlp:128,64") from None
    if any(h < 1 for h in hidden):
        raise ValueError(f"--student {spec!r}: hidden widths must be >= 1")
    return "mlp", hidden


def run(args) -> int:
    import numpy as np
    import tinyinfer
    from tinyinfer import distill
    kind, arg = parse_student(args.student)
    distill._torch("python -m tinyinfer distill")  # before the teacher runs: a missing torch is one line now
    x = np.load(args.data, mmap_mode="r")
    labels = np.load(args.labels) if args.labels else None
    with tinyinfer.load(args.teacher) as teacher:
        if len(teacher.outputs) < 1 or len(teacher.outputs[0].shape) != 2:
            raise ValueError(f"{args.teacher}: the first output must be [batch, classes] to distill from")
        classes = teacher.outputs[0].shape[1]
        if kind == "mlp":
            student = distill.mlp_student(int(np.prod(x.shape[1:])), arg, classes)
        else:
            student = distill.shrink(teacher, width=arg)
        result, model = distill.distill(teacher, student, x, labels=labels, dst=args.output, quantize=args.quantize,
                                        epochs=args.epochs, temperature=args.temperature, alpha=args.alpha,
                                        lr=args.lr, patience=args.patience, seed=args.seed,
                                        cache_dir=args.cache_dir, progress=not args.no_progress,
                                        via="torchscript")  # the MLP's reshape(-1, n) stays batch-dynamic
        model.close()
    print(f"{args.output}: {os.path.getsize(args.output)} bytes; best epoch {result.best_epoch} of "
          f"{len(result.history)} (val loss {result.best_val_loss:.4f}), {result.seconds:.1f}s training",
          file=sys.stderr)
    return 0
