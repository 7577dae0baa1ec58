"""Least-squares correction of the weights Wanda keeps (the issue's option,
as in SparseGPT-style reconstruction but after the mask is chosen): for each
output row, the kept weights are refitted so that the pruned layer's output
on the calibration activations comes as close as possible to the dense
layer's, with ridge regularization:

    v = argmin ||X w - X_S v||^2 + lam ||v||^2   over the kept columns S
      = (G_SS + lam I)^-1 G_S: w,                G = X^T X (k x k)

X are the layer's inputs on the calibration data (the dense parent's
activations; a Conv2D's input patches, im2col), `lam` = ridge times the mean
of diag(G). Zeros stay zero: only the kept weights change. Policy and numpy,
hence Python (docs/pruning.md)."""

from typing import Dict, List, Optional, Tuple

import numpy as np

DEFAULT_RIDGE = 1e-2


def _graph_ops(pruner_cls, parent):
    """(tensors, ops) of the graph the library loads (after its passes): the
    pruner's op indices refer to it."""
    from .prune_structured import _read_tinf
    with pruner_cls(parent) as q:
        _meta, tensors, _gi, _go, ops = _read_tinf(q.finish())
    return tensors, ops


def _patches(x: np.ndarray, op, w_shape: Tuple[int, ...], out_shape: Tuple[int, ...]) -> Optional[np.ndarray]:
    """A one-group Conv2D's input patches [N*OH*OW, KH*KW*C] (rows in the
    weights' [KH, KW, Cin] order), zeros where the window reads padding."""
    a = op.attrs
    _n, kh, kw, cin = w_shape
    if x.ndim != 4 or x.shape[3] != cin or len(out_shape) != 4:
        return None
    sh, sw = a.get("strides", (0, [1, 1]))[1]
    dh, dw = a.get("dilations", (0, [1, 1]))[1]
    padding = a.get("padding", (0, 0))[1]
    oh, ow = out_shape[1], out_shape[2]
    H, W = x.shape[1], x.shape[2]
    if padding == 2:
        pt, _pb, pl, _pr = a.get("pads", (0, [0, 0, 0, 0]))[1]
    elif padding == 1:
        pt = max((oh - 1) * sh + (kh - 1) * dh + 1 - H, 0) // 2
        pl = max((ow - 1) * sw + (kw - 1) * dw + 1 - W, 0) // 2
    else:
        pt = pl = 0
    need_h = (oh - 1) * sh + (kh - 1) * dh + 1
    need_w = (ow - 1) * sw + (kw - 1) * dw + 1
    xp = np.zeros((x.shape[0], max(need_h, pt + H), max(need_w, pl + W), cin), np.float64)
    xp[:, pt:pt + H, pl:pl + W, :] = x
    taps = [xp[:, i * dh: i * dh + (oh - 1) * sh + 1: sh, j * dw: j * dw + (ow - 1) * sw + 1: sw, :]
            for i in range(kh) for j in range(kw)]
    return np.stack(taps, axis=3).reshape(-1, kh * kw * cin)


def layer_grams(pruner_cls, parent, infos: List[dict], sets) -> Tuple[Dict[int, np.ndarray], Dict[int, str]]:
    """G = X^T X of each layer's inputs over the calibration sets (float64),
    and why a layer has none (grouped convolutions, inputs the patches do
    not cover)."""
    tensors, ops = _graph_ops(pruner_cls, parent)
    grams: Dict[int, np.ndarray] = {}
    skipped: Dict[int, str] = {}
    wanted = {}
    for i, info in enumerate(infos):
        op = ops[info["op_index"]]
        if info["groups"] != 1:
            skipped[i] = "grouped convolution"
            continue
        wanted[i] = (op, tensors[op.inputs[0]].name)
    names = sorted({name for _op, name in wanted.values()})
    for xs in sets:
        got = dict(zip(names, parent.run(list(xs), outputs=names))) if names else {}
        for i, (op, name) in wanted.items():
            if i in skipped:
                continue
            x = np.asarray(got[name], np.float64)
            k = infos[i]["k"]
            if op.op == "Conv2D":
                w_shape = tensors[op.inputs[1]].shape
                rows = _patches(x, op, w_shape, tensors[op.outputs[0]].shape)
                if rows is None:
                    skipped[i] = "input patches not supported"
                    continue
            else:
                if x.size % k:
                    skipped[i] = "input does not split into rows of the weights' width"
                    continue
                rows = x.reshape(-1, k)
            g = rows.T @ rows
            grams[i] = g if i not in grams else grams[i] + g
    return grams, skipped


def correct_rows(w_dense: np.ndarray, w_masked: np.ndarray, gram: np.ndarray,
                 ridge: float = DEFAULT_RIDGE) -> np.ndarray:
    """The kept weights of each row refitted to the dense row's outputs on
    the activations whose Gram matrix is `gram`; zeros stay zero."""
    w_dense = np.asarray(w_dense, np.float64)
    out = np.asarray(w_masked, np.float32).copy()
    diag = np.diag(gram)
    lam = ridge * float(diag.mean()) if diag.size and diag.mean() > 0 else ridge
    target = gram @ w_dense.T                     # [k, n]: G w for every row
    for r in range(w_masked.shape[0]):
        keep = np.flatnonzero(w_masked[r])
        if keep.size == 0:
            continue
        a = gram[np.ix_(keep, keep)] + lam * np.eye(keep.size)
        try:
            v = np.linalg.solve(a, target[keep, r])
        except np.linalg.LinAlgError:
            continue
        if np.all(np.isfinite(v)):
            v32 = v.astype(np.float32)
            out[r, keep] = v32
    return out
