"""The ONNX importer's driver: reads the model, fixes input shapes, alternates ONNX shape inference and
constant folding, runs the ONNX-level rewrites (rewrites.py), then emits every node through the handler
table (HANDLERS in __init__.py: op type -> handler(importer, node)) while tracking each value's layout,
and replays the emitted ops into a GraphBuilder (_graph._Graph). The helpers here (emit, get, operand,
weight, take_activation, ...) are what the handlers call."""

from __future__ import annotations

import math
import os
import pickle
import re
import select
import signal
import time
from collections import Counter, defaultdict
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..._errors import InvalidArgumentError, ModelFormatError, UnsupportedOpError
from ...builder import GraphBuilder
from .. import Report, check_elements, require, unsupported
from . import recurrent, rewrites
from ._graph import (MAX_OPSET, MIN_OPSET, NHWC, Node, Val, WeightSrc, _CONTRIB, _FOLD_EXCLUDE, _Graph, _T,
                     _attr_value, _dequant, _ident, _inv, _norm, _np_dtype)

Handler = Callable[["_Importer", Node], None]


class _Importer:
    def __init__(self, source, report: Report, handlers: Dict[str, Handler], batch: int = 1, input_shapes=None,
                 keep_int8_weights: bool = True, check_opset: bool = True, name: Optional[str] = None,
                 input_values=None, probe: int = 0):
        require("onnx", "onnx", "the ONNX importer")
        # Dynamic non-batch input dims get example sizes (PROBE_SIZES[probe]); import_model converts at two
        # probes and keeps the dims dynamic when the graphs differ only where the runtime infers (dynamic.py).
        self.probe = probe
        self.dynamic: List[Tuple[str, int, str]] = []  # (input, dim, symbol)
        self.report = report
        self.handlers = handlers
        self.batch = int(batch)
        self.input_shapes = dict(input_shapes or {})
        self.input_values = dict(input_values or {})
        self.keep_int8 = bool(keep_int8_weights)
        self.check_opset = check_opset
        self.model = self._load(source)
        self.name = name or self.model.graph.name or "onnx"

    @staticmethod
    def _load(source):
        import onnx
        if isinstance(source, onnx.ModelProto):
            return source
        try:
            if isinstance(source, (bytes, bytearray, memoryview)):
                return onnx.load_from_string(bytes(source))
            return onnx.load(os.fspath(source))
        except Exception as e:  # a protobuf decode error
            raise ModelFormatError(f"cannot read the ONNX model: {e}") from e

    def run(self, deferred: bool = False) -> GraphBuilder:
        """The converted graph; `deferred`: the _Graph before it is written (a control-flow branch)."""
        m = self.model
        self.opset = 0
        self.domains = {}
        for o in m.opset_import:
            self.domains[o.domain or "ai.onnx"] = o.version
        self.opset = self.domains.get("ai.onnx", 0)
        if self.check_opset and not (MIN_OPSET <= self.opset <= MAX_OPSET):
            raise UnsupportedOpError(
                f"onnx: opset {self.opset} is not supported (supported: {MIN_OPSET} to {MAX_OPSET}); nothing was "
                f"written (check_opset=False tries anyway)")
        self.report.notes.append(f"ONNX opset {self.opset}, producer {m.producer_name or '?'} "
                                 f"{m.producer_version or ''}".rstrip())
        self._read_graph()
        self._fix_inputs()
        self._fold_loop()
        self._rewrites()
        self._check_supported()
        return self._emit_all(deferred)

    def _read_graph(self):
        import onnx
        g = self.model.graph
        self.consts: Dict[str, np.ndarray] = {}
        for init in g.initializer:
            self.consts[init.name] = onnx.numpy_helper.to_array(init)
        for sp in g.sparse_initializer:
            raise UnsupportedOpError("onnx: sparse initializers are not supported; nothing was written")
        self.nodes: List[Node] = self._nodes_of(g)
        self.report.ops_in.update(p.op_type for p in g.node)
        self.outputs = [o.name for o in g.output]
        self.output_set = set(self.outputs)
        inits = set(self.consts)
        self.inputs = []
        for vi in g.input:
            if vi.name in inits:
                continue  # an initializer listed as input (IR < 4): a constant
            self.inputs.append(vi)

    def _nodes_of(self, g) -> List[Node]:
        """The nodes of graph g; its Constant nodes go to self.consts instead."""
        nodes = []
        for p in g.node:
            attrs = {a.name: _attr_value(a) for a in p.attribute}
            domain = p.domain if p.domain not in ("", "ai.onnx") else ""
            if p.op_type == "Constant" and domain == "":
                self.consts[p.output[0]] = self._constant_value(p, attrs)
                continue
            nodes.append(Node(p.op_type, domain, p.name, p.input, p.output, attrs, p))
        return nodes

    @staticmethod
    def _constant_value(p, attrs) -> np.ndarray:
        if "value" in attrs:
            return np.asarray(attrs["value"])
        if "value_float" in attrs:
            return np.array(attrs["value_float"], dtype=np.float32)
        if "value_floats" in attrs:
            return np.array(attrs["value_floats"], dtype=np.float32)
        if "value_int" in attrs:
            return np.array(attrs["value_int"], dtype=np.int64)
        if "value_ints" in attrs:
            return np.array(attrs["value_ints"], dtype=np.int64)
        raise UnsupportedOpError(f"onnx: Constant '{p.name}' with {sorted(attrs)} is not supported")

    def _fix_inputs(self):
        """Static input shapes: a dynamic first dim becomes `batch`; other dynamic dims are refused."""
        self.in_types: Dict[str, Tuple[np.dtype, Tuple[int, ...]]] = {}
        for opt in ("input_shapes", "input_values"):
            unknown = sorted(set(getattr(self, opt)) - {vi.name for vi in self.inputs})
            if unknown:
                raise InvalidArgumentError(f"onnx importer: {opt} names {unknown}, which are not inputs of the model "
                                           f"(its inputs: {[vi.name for vi in self.inputs]})")
        both = sorted(set(self.input_shapes) & set(self.input_values))
        if both:
            raise InvalidArgumentError(f"onnx importer: {both} given both a shape and a value")
        self._fix_input_values()
        # Named dims whose size is known: those of inputs given a shape, and the batch (dim 0) of the others;
        # a dim of another input with the same name takes that size (Silero VAD's state [2, batch, 128]).
        known_syms: Dict[str, int] = {}
        for vi in self.inputs:
            tt = vi.type.tensor_type
            if not vi.type.HasField("tensor_type") or not tt.HasField("shape"):
                continue
            given = self.input_shapes.get(vi.name)
            for i, d in enumerate(tt.shape.dim):
                if d.dim_param and given is not None and i < len(given):
                    known_syms.setdefault(d.dim_param, int(given[i]))
                elif d.dim_param and i == 0 and given is None:
                    known_syms.setdefault(d.dim_param, self.batch)
        for vi in self.inputs:
            tt = vi.type.tensor_type
            if not vi.type.HasField("tensor_type"):
                raise UnsupportedOpError(f"onnx: input '{vi.name}' is not a tensor")
            dtype = _np_dtype(tt.elem_type)
            if vi.name in self.input_shapes:
                shape = tuple(int(d) for d in self.input_shapes[vi.name])
                declared = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                            for d in tt.shape.dim] if tt.HasField("shape") else None
                if declared is not None and (len(declared) != len(shape) or any(
                        d is not None and d != s for d, s in zip(declared, shape))):
                    raise InvalidArgumentError(f"onnx importer: shape {list(shape)} given for input '{vi.name}' does not fit "
                                    f"its declared shape {['?' if d is None else d for d in declared]}")
                if any(d < 1 for d in shape):
                    raise InvalidArgumentError(f"onnx importer: shape {list(shape)} for input '{vi.name}' has a dim below 1")
            else:
                if not tt.HasField("shape"):
                    raise UnsupportedOpError(f"onnx: input '{vi.name}' has no shape; give input_shapes=")
                shape = []
                for i, d in enumerate(tt.shape.dim):
                    if d.HasField("dim_value") and d.dim_value > 0:
                        shape.append(d.dim_value)
                    elif d.dim_param and d.dim_param in known_syms and (i > 0 or known_syms[d.dim_param]
                                                                          != self.batch):
                        shape.append(known_syms[d.dim_param])
                        self.report.notes.append(f"input '{vi.name}': dim {i} ('{d.dim_param}') fixed to "
                                                 f"{known_syms[d.dim_param]}, the size of the dim of that name")
                    elif i == 0:
                        shape.append(self.batch)
                        self.report.notes.append(
                            f"input '{vi.name}': dynamic batch dim '{d.dim_param or '?'}' fixed to {self.batch}")
                    else:
                        # A sequence length: an example size here, left dynamic by import_model (dynamic.py).
                        from .dynamic import probe_size
                        sym = d.dim_param or f"{vi.name}:{i}"
                        known = [s for _, _, s in self.dynamic]
                        k = known.index(sym) if sym in known else len(set(known))
                        self.dynamic.append((vi.name, i, sym))
                        shape.append(probe_size(self.probe, k))
                shape = tuple(shape)
            self.in_types[vi.name] = (dtype, shape)

    def _fix_input_values(self):
        """input_values: each named input becomes a constant of that value (in the input's dtype, of a shape that
        fits the declared one) and is no input of the converted model; Ifs it selects fold to their branch."""
        for vi in [vi for vi in self.inputs if vi.name in self.input_values]:
            tt = vi.type.tensor_type
            dtype = _np_dtype(tt.elem_type) if vi.type.HasField("tensor_type") else None
            if dtype is None or dtype.kind not in "biuf":
                raise InvalidArgumentError(f"onnx importer: input_values: input '{vi.name}' is not a numeric tensor")
            try:
                raw = np.asarray(self.input_values[vi.name])
                arr = raw.astype(dtype)
            except (TypeError, ValueError) as e:
                raise InvalidArgumentError(f"onnx importer: input_values['{vi.name}']: {e}") from None
            if raw.dtype.kind not in "biuf" or not np.array_equal(arr, raw):
                raise InvalidArgumentError(f"onnx importer: input_values['{vi.name}'] is not exactly a {dtype} value")
            declared = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                        for d in tt.shape.dim] if tt.HasField("shape") else None
            if declared is not None and (len(declared) != arr.ndim or any(
                    d is not None and d != s for d, s in zip(declared, arr.shape))):
                raise InvalidArgumentError(f"onnx importer: input_values['{vi.name}'] has shape {list(arr.shape)}; the "
                                           f"input is declared {['?' if d is None else d for d in declared]}")
            self.consts[vi.name] = arr
            self.inputs.remove(vi)
            self.report.notes.append(f"input '{vi.name}' fixed to the constant {arr.tolist()} (input_values); the "
                                     f"converted model has no such input")

    def _as_model(self, with_all_consts: bool = False):
        import onnx
        from onnx import helper, numpy_helper
        nodes = []
        for n in self.nodes:
            if n.dead:
                continue
            if n.domain == "com.microsoft" and n.op in _CONTRIB:
                nodes.extend(self._proxy(n))
                continue
            if n.domain == "com.microsoft" and n.op == "DynamicQuantizeLSTM":
                nodes.extend(recurrent.dynamic_quantize_lstm_proxy(n))
                continue
            p = onnx.NodeProto()
            if n.proto is None:
                p = helper.make_node(n.op, n.inputs, n.outputs, name=n.name, domain=n.domain,
                                     **{k: v for k, v in n.attrs.items()})
            else:
                p.CopyFrom(n.proto)
                del p.input[:]
                p.input.extend(n.inputs)
                del p.output[:]
                p.output.extend(n.outputs)
            nodes.append(p)
        inputs = [helper.make_tensor_value_info(nm, helper.np_dtype_to_tensor_dtype(dt), list(sh))
                  for nm, (dt, sh) in self.in_types.items()]
        used = {i for n in self.nodes if not n.dead for i in n.inputs} | self.output_set
        inits = []
        for nm, arr in self.consts.items():
            if nm not in used:
                continue
            if with_all_consts or arr.size <= 4096:
                inits.append(numpy_helper.from_array(np.asarray(arr), nm))
            else:  # shape inference needs the type only
                inputs.append(helper.make_tensor_value_info(nm, helper.np_dtype_to_tensor_dtype(arr.dtype),
                                                            list(arr.shape)))
        outputs = [helper.make_empty_tensor_value_info(o) for o in self.outputs]
        vis = [helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(dt), list(sh))
               for o, (dt, sh) in getattr(self, "if_types", {}).items()]
        g = helper.make_graph(nodes, self.name, inputs, outputs, initializer=inits, value_info=vis)
        m = helper.make_model(g, opset_imports=list(self.model.opset_import))
        m.ir_version = max(self.model.ir_version, 7)
        return m

    def _proxy(self, n: Node):
        """Standard-domain nodes with the output type and shape of a com.microsoft quantized op (for shape
        inference only): Cast the quantized inputs to float, the float op, Cast to the output's type."""
        from onnx import TensorProto, helper
        float_op, ins, zp_i, keep = _CONTRIB[n.op]
        if n.op == "QLinearConcat":
            ins = list(range(2, len(n.inputs), 3))
        nodes, casted = [], []
        for k, i in enumerate(ins):
            nm = f"__proxy_{n.outputs[0]}_{k}"
            nodes.append(helper.make_node("Cast", [n.inputs[i]], [nm], to=TensorProto.FLOAT))
            casted.append(nm)
        attrs = {k: v for k, v in n.attrs.items() if k in keep}
        out = n.outputs[0]
        if zp_i is not None and (zp_i < len(n.inputs) and n.inputs[zp_i] or n.op != "QGemm"):
            zp = self.consts.get(n.inp(zp_i))
            to = helper.np_dtype_to_tensor_dtype(zp.dtype) if zp is not None else TensorProto.UINT8
            fl = f"__proxy_{out}_float"
            nodes.append(helper.make_node(float_op, casted, [fl], **attrs))
            nodes.append(helper.make_node("Cast", [fl], [out], to=to))
        else:
            nodes.append(helper.make_node(float_op, casted, [out], **attrs))
        return nodes

    def _infer(self):
        m = self._as_model()
        # The file as given runs within the budget (bounded_call: a forked
        # child, about 50 ms); once it passed, the rounds after constant
        # folding (whose new constants are within MAX_FOLD_ELEMENTS) run here.
        if getattr(self, "_inferred_once", False):
            types = _inferred_types(m)
        else:
            types = bounded_call(lambda: _inferred_types(m), "onnx: shape inference")
            self._inferred_once = True
        for nm, (dt, sh) in self.in_types.items():
            types[nm] = (dt, sh)
        for nm, (dt, sh) in getattr(self, "if_types", {}).items():
            if types.get(nm) is None or types[nm][1] is None:
                types[nm] = (dt, sh)
        self.types = types
        if self._if_types():
            self._infer()

    def _if_types(self) -> bool:
        """Output types of run-time Ifs that ONNX inference left unknown, from their branches (control.py);
        _as_model gives them as value infos, so that the next inference carries them on. True if some were new."""
        from . import control
        new = False
        for n in self.nodes:
            if n.dead or n.domain or n.op != "If" or n.inp(0) in self.consts:
                continue
            if all(not o or (self.types.get(o) is not None and self.types[o][1] is not None) for o in n.outputs):
                continue
            found = control.branch_output_types(self, n)
            if found is not None:
                for o, (dt, sh) in zip(n.outputs, found):
                    if o:
                        self.if_types[o] = (dt, sh)
                new = True
        return new

    def _eval(self, n: Node, values: List[Optional[np.ndarray]]) -> List[np.ndarray]:
        import onnx
        from onnx import helper
        from onnx.reference import ReferenceEvaluator
        if n.op == "GatherElements" and not n.domain:
            # onnx.reference's GatherElements fails when indices are smaller than the data on the gather
            # axis (onnx 1.23: "cannot reshape array"); np.take_along_axis is the same op.
            data, idx = values[0], np.asarray(values[1]).astype(np.int64)
            axis = int(n.attrs.get("axis", 0)) % max(data.ndim, 1)
            idx = np.where(idx < 0, idx + data.shape[axis], idx)
            if idx.ndim != data.ndim or any(a > b for d, (a, b) in enumerate(zip(idx.shape, data.shape))
                                            if d != axis) or np.any(idx < 0) or np.any(idx >= data.shape[axis]):
                raise ValueError("indices out of range or of another rank than the data")
            sl = tuple(slice(0, s) for s in idx.shape[:axis]) + (slice(None),) + \
                tuple(slice(0, s) for s in idx.shape[axis + 1:])
            return [np.take_along_axis(data[sl], idx, axis=axis)]
        ins = [f"i{k}" if nm else "" for k, nm in enumerate(n.inputs)]
        outs = [f"o{k}" if nm else "" for k, nm in enumerate(n.outputs)]
        p = onnx.NodeProto()
        p.CopyFrom(n.proto)
        del p.input[:]
        p.input.extend(ins)
        del p.output[:]
        p.output.extend(outs)
        opsets = {"": self.opset}
        if n.domain:
            opsets[n.domain] = self.domains.get(n.domain, 1)
        ev = ReferenceEvaluator(p, opsets=opsets)
        feeds = {k: v for k, v in zip(ins, values) if k}
        res = ev.run(None, feeds)
        return [np.asarray(r) for r in res]

    def _fold_pass(self) -> int:
        folded = 0
        for n in self.nodes:
            if n.dead or n.domain or n.op in _FOLD_EXCLUDE:
                continue
            real = [i for i in n.inputs if i]
            if n.op in ("Shape", "Size"):
                if n.inputs[0] in self.consts:
                    shape = np.array(self.consts[n.inputs[0]].shape, dtype=np.int64)
                else:
                    t = self.types.get(n.inputs[0])
                    if t is None or t[1] is None:
                        continue
                    shape = np.array(t[1], dtype=np.int64)
                if n.op == "Size":
                    out = np.array(int(np.prod(shape)), dtype=np.int64)
                else:
                    start, end = n.attrs.get("start", 0), n.attrs.get("end", None)
                    out = shape[start:end]
                self.consts[n.outputs[0]] = out
            elif real and all(i in self.consts for i in real):
                values = [self.consts[i] if i else None for i in n.inputs]
                _check_fold_size(n, values, self.types)
                try:
                    res = self._eval(n, values)
                except Exception as e:
                    raise UnsupportedOpError(f"onnx: cannot evaluate constant {n.label()}: {e}") from e
                for nm, r in zip(n.outputs, res):
                    if nm:
                        self.consts[nm] = r
            elif n.op == "Mul" and self._int_times_zero(n):
                # x * 0 with integer x is 0 whatever x holds (exporters keep an unused input alive this way,
                # e.g. Silero VAD op15's `sr * 0` added to the state)
                dt, shape = self.types[n.outputs[0]]
                self.consts[n.outputs[0]] = np.zeros(shape, dt)
            elif n.op in ("Identity", "Dropout") and not real:
                continue
            else:
                continue
            n.dead = True
            folded += 1
            self.fold_counts[n.op] += 1
        return folded

    def _inline_ifs(self) -> int:
        """Each If whose condition is a constant replaced by the nodes of the branch it takes (the branch's
        outputs renamed to the If's through Identity), so that shape inference and folding see through it
        (exporters guard shape-dependent code with such Ifs: `if x.dim() == 3: x = x.squeeze(0)`). An If
        whose branch defines a name the enclosing graph also uses stays (the runtime If runs it)."""
        from onnx import helper, numpy_helper
        inlined, nodes = 0, []
        outer = None
        for n in self.nodes:
            cond = n.inp(0)
            if n.dead or n.domain or n.op != "If" or cond not in self.consts or self.consts[cond].size != 1:
                nodes.append(n)
                continue
            g = n.attrs.get("then_branch" if bool(self.consts[cond].reshape(-1)[0]) else "else_branch")
            if g is None or len(g.output) != len(n.outputs):
                nodes.append(n)
                continue
            if outer is None:
                outer = set(self.consts) | {nm for m in self.nodes for nm in list(m.inputs) + list(m.outputs)}
                outer |= set(self.in_types) | self.output_set
            defined = {i.name for i in g.initializer} | {o for p in g.node for o in p.output if o}
            if defined & outer:
                nodes.append(n)
                continue
            outer |= defined
            for init in g.initializer:
                self.consts[init.name] = numpy_helper.to_array(init)
            nodes.extend(self._nodes_of(g))
            for k, (src, dst) in enumerate(zip(g.output, n.outputs)):
                if dst:
                    p = helper.make_node("Identity", [src.name], [dst], name=f"{n.name or dst}/taken_{k}")
                    nodes.append(Node("Identity", "", p.name, p.input, p.output, {}, p))
            inlined += 1
            self.fold_counts["If"] += 1
        self.nodes = nodes
        return inlined

    def _int_times_zero(self, n: Node) -> bool:
        """Mul n has an all-zero constant operand, integer operands and an output of known static shape."""
        t = self.types.get(n.outputs[0])
        if len(n.inputs) != 2 or t is None or t[1] is None or np.dtype(t[0]).kind not in "iu":
            return False
        return any(nm in self.consts and not np.any(self.consts[nm]) for nm in n.inputs)

    def _fold_loop(self):
        self.fold_counts = Counter()
        self.if_types: Dict[str, tuple] = {}
        self.if_tried: Dict[int, tuple] = {}  # If node id -> what was known when its branches were tried
        for _ in range(50):
            self._infer()
            if not self._fold_pass() + self._inline_ifs():
                break
        self.nodes = [n for n in self.nodes if not n.dead]
        if self.fold_counts:
            self.report.folded.append(
                "constant folding: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.fold_counts.items())))

    def _index(self):
        self.producer: Dict[str, Node] = {}
        self.consumers: Dict[str, List[Node]] = defaultdict(list)
        for n in self.nodes:
            if n.dead:
                continue
            for o in n.outputs:
                if o:
                    self.producer[o] = n
            for i in n.inputs:
                if i and n not in self.consumers[i]:
                    self.consumers[i].append(n)

    def _live_consumers(self, name) -> List[Node]:
        return [c for c in self.consumers.get(name, []) if not c.dead]

    def _single(self, name) -> Optional[Node]:
        """The only consumer of `name` (None if several, none, or a graph output)."""
        if name in self.output_set:
            return None
        cs = self._live_consumers(name)
        return cs[0] if len(cs) == 1 else None

    def _scalar(self, name) -> Optional[float]:
        if name in self.consts and self.consts[name].size == 1:
            return float(self.consts[name].reshape(-1)[0])
        return None

    def _shape(self, name) -> Tuple[int, ...]:
        if name in self.consts:
            return tuple(self.consts[name].shape)
        t = self.types.get(name)
        if t is None or t[1] is None:
            raise UnsupportedOpError(f"onnx: tensor '{name}' has no static shape (dynamic shapes are not "
                                     f"supported); nothing was written")
        check_elements(t[1], np.dtype(t[0]).itemsize, f"onnx: tensor '{name}'")
        return t[1]

    def _dtype(self, name) -> np.dtype:
        if name in self.consts:
            return self.consts[name].dtype
        t = self.types.get(name)
        return t[0] if t else np.dtype(np.float32)

    def _new_const(self, base, arr) -> str:
        nm = base
        k = 0
        while nm in self.consts or nm in self.types:
            k += 1
            nm = f"{base}_{k}"
        self.consts[nm] = arr
        return nm

    def _rewrites(self):
        self._index()
        rewrites.fold_batchnorm(self)
        rewrites.fold_pads(self)
        rewrites.match_gelu(self)
        rewrites.match_layernorm(self)
        rewrites.match_small(self)
        self.nodes = [n for n in self.nodes if not n.dead]
        self._index()

    def _float_const(self, name) -> Optional[np.ndarray]:
        if name and name in self.consts and self.consts[name].dtype.kind == "f":
            return self.consts[name].astype(np.float32)
        return None

    def _axes_of(self, n) -> Optional[List[int]]:
        if "axes" in n.attrs:
            return [int(a) for a in n.attrs["axes"]]
        if n.inp(1):
            a = self.consts.get(n.inp(1))
            return None if a is None else [int(v) for v in a.reshape(-1)]
        return []

    @staticmethod
    def _key(n: Node) -> str:
        """The node's key in the handler table: its op type, prefixed by its domain outside the default one."""
        return n.op if not n.domain else f"{n.domain}.{n.op}"

    def _check_supported(self):
        bad = Counter()
        for n in self.nodes:
            if not n.dead and self._key(n) not in self.handlers:
                bad[self._key(n)] += 1
        if bad:
            raise unsupported("onnx", bad)

    def _fresh(self, base: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_.:/\-]", "_", str(base))[:120] or "t"
        nm, k = base, 0
        while nm in self.used_names:
            k += 1
            nm = f"{base}_{k}"
        self.used_names.add(nm)
        return nm

    def emit(self, op: str, *inputs, name: Optional[str] = None, outputs: int = 1, out_names=None, **attrs):
        self.report.ops_out[op] += 1
        attrs = {k: v for k, v in attrs.items() if v is not None}
        if out_names is not None:
            res = self.b.op(op, *inputs, outputs=list(out_names), **attrs)
        elif outputs == 1:
            if name is not None and name in self.claimed:
                self.claimed.discard(name)
            else:
                name = self._fresh(name or op.lower())
            res = self.b.op(op, *inputs, name=name, **attrs)
        else:
            res = self.b.op(op, *inputs, outputs=[self._fresh(f"{name or op.lower()}_{i}") for i in range(outputs)],
                            **attrs)
        if self.trace is not None:
            outs = res if isinstance(res, list) else [res]
            self.trace.append(f"{op}({', '.join(t.name if t is not None else '-' for t in inputs)}) -> "
                              f"{', '.join(t.name for t in outs)} {attrs}")
        return res

    def out_name(self, onnx_name: str, plain: bool) -> str:
        """The runtime name for the tensor holding ONNX value onnx_name (the ONNX name if it is a
        plain graph output not yet named)."""
        if plain and onnx_name in self.output_set and onnx_name not in self.named_outputs:
            self.named_outputs.add(onnx_name)
            nm = onnx_name
        else:
            nm = self._fresh(onnx_name + ("" if plain else "_nhwc"))
        self.claimed.add(nm)
        return nm

    def const(self, arr, name="const") -> _T:
        arr = np.ascontiguousarray(arr)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        return self.b.const(self._fresh(name), arr)

    def val(self, name: str) -> Val:
        if name in self.vals:
            return self.vals[name]
        if name in self.consts:
            arr = self.consts[name]
            v = Val(None, arr.shape, arr.dtype, const=arr)
            self.vals[name] = v
            return v
        if name in self.qconsts:
            arr = self.qconst_float(name)
            v = Val(None, arr.shape, arr.dtype, const=arr)
            self.vals[name] = v
            return v
        raise UnsupportedOpError(f"onnx: tensor '{name}' is not produced by any supported node")

    def is_const(self, name) -> bool:
        return bool(name) and (name in self.consts or name in self.qconsts)

    def cval(self, name) -> np.ndarray:
        if name in self.consts:
            return self.consts[name]
        if name in self.qconsts:
            return self.qconst_float(name)
        raise UnsupportedOpError(f"onnx: '{name}' must be a constant")

    def qconst_float(self, name) -> np.ndarray:
        q, s, z, axis = self.qconsts[name]
        if name not in self.qconst_folded:
            self.qconst_folded.add(name)
            self.report.folded.append(f"DequantizeLinear of constant '{name}' ({q.dtype}) evaluated at conversion")
        return _dequant(q, s, z, axis)

    def weight(self, name) -> WeightSrc:
        if name in self.qconsts:
            q, s, z, axis = self.qconsts[name]
            if q.dtype in (np.int8, np.uint8) and self.keep_int8:
                return WeightSrc(q=q, scale=s, zp=z, axis=axis, name=name)
            return WeightSrc(arr=self.qconst_float(name), name=name)
        if name in self.consts:
            a = self.consts[name]
            if a.dtype.kind != "f":
                raise UnsupportedOpError(f"onnx: weight '{name}' has dtype {a.dtype}")
            return WeightSrc(arr=a.astype(np.float32), name=name)
        raise UnsupportedOpError(f"onnx: weight '{name}' is not constant")

    def emit_weight(self, ws: WeightSrc, name: str) -> _T:
        if not ws.quantized:
            return self.const(ws.float(), name)
        c = self.const(ws.q, name + "_q")
        s = np.asarray(ws.scale, np.float32).reshape(-1)
        z = np.zeros(s.shape, np.int32) if ws.zp is None else np.asarray(ws.zp).astype(np.int32).reshape(-1)
        if z.size == 1 and s.size > 1:
            z = np.full(s.shape, int(z[0]), np.int32)
        if s.size == 1 and z.size == 1:
            self.b.quantization(c, s, z)
        else:
            self.b.quantization(c, s, z, axis=ws.axis)
        self.report.kept_precision.append(f"{ws.name or name} ({ws.q.dtype}, "
                                          f"{'per-tensor' if s.size == 1 else f'per-channel axis {ws.axis}'})")
        return self.emit("Dequantize", c, name=name)

    def get(self, v: Val, perm=None) -> _T:
        """The runtime tensor of v in the order `perm` of its ONNX axes (None: ONNX order)."""
        perm = _norm(perm)
        if v.const is not None:
            key = ("c", perm)
            if key not in v.views:
                arr = v.const if perm is None else np.transpose(v.const, perm)
                v.views[key] = self.const(arr, "const")
            return v.views[key]
        if v.flat is not None:
            if "plain" not in v.views:
                c, h, w = v.flat
                n = v.shape[0]
                r1 = self.emit("Reshape", v.t, name="unflatten", shape=[n, h, w, c])
                r2 = self.emit("Transpose", r1, name="to_nchw", perm=[0, 3, 1, 2])
                v.views["plain"] = self.emit("Reshape", r2, name="flatten_nchw", shape=[n, c * h * w])
                self.transposes.append(f"{v.shape} flattened NHWC -> flattened NCHW (for a consumer that is not a "
                                       f"constant-weight Gemm/MatMul)")
            if perm is not None:
                raise UnsupportedOpError("onnx: internal: permuting a flattened tensor")
            return v.views["plain"]
        if perm == v.perm or v.rank <= 1:
            return v.t
        if perm in v.views:
            return v.views[perm]
        src = v.perm or _ident(v.rank)
        tgt = perm or _ident(v.rank)
        inv = _inv(src)
        u = [inv[tgt[j]] for j in range(v.rank)]
        # Moving only size-1 dims is a Reshape.
        rt = v.rt_shape()
        nontriv = [a for a in u if rt[a] != 1]
        if nontriv == sorted(nontriv):
            t = self.emit("Reshape", v.t, name="reshape", shape=[rt[a] for a in u])
        else:
            t = self.emit("Transpose", v.t, name="transpose", perm=u)
            self.transposes.append(f"{v.shape} {'NHWC' if src == NHWC else src} -> "
                                   f"{'NHWC' if tgt == NHWC else 'ONNX order' if tgt == _ident(v.rank) else tgt}")
        v.views[perm] = t
        return t

    def fval(self, name: str) -> Val:
        """A float value (refuses integer and quantized tensors)."""
        v = self.val(name)
        if v.kind == "deq":
            raise UnsupportedOpError(f"onnx: arithmetic on the quantized tensor '{name}' is not supported")
        if v.kind == "real" and v.dtype != np.float32:
            if v.const is not None and v.dtype.kind == "f":
                return Val(None, v.shape, np.float32, const=v.const.astype(np.float32))
            raise UnsupportedOpError(f"onnx: tensor '{name}' has dtype {v.dtype}; the runtime computes in float32")
        return v

    def set(self, name: str, v: Val):
        self.vals[name] = v

    def take_activation(self, out: str, lifted: bool = False) -> Tuple[int, str]:
        """The fused activation for the op making `out` when its only consumer is an activation the core's
        ActivationFusion cannot fuse: Clip(-1, 1) (no runtime op expresses it alone), or Relu / Clip(0, 6) /
        Clip(0, inf) after a `lifted` op (a 1-D op run as 2-D: a Reshape stands between it and the
        activation). Returns (activation code, the name its output then takes). Other Relu / Relu6 are
        emitted as ops and fused at load."""
        c = self._single(out)
        if c is None or c.dead or c.domain:
            return 0, out
        code = 0
        if c.op == "Relu":
            code = 1
        elif c.op == "Clip":
            lo = self._scalar(c.inp(1)) if c.inp(1) else -math.inf
            hi = self._scalar(c.inp(2)) if c.inp(2) else math.inf
            if lo is None or hi is None:
                return 0, out
            code = {(0.0, 6.0): 2, (0.0, math.inf): 1, (-1.0, 1.0): 3}.get((lo, hi), 0)
        if code == 0 or (code in (1, 2) and not lifted):
            return 0, out
        c.dead = True
        self.report.fused.append(f"{c.label()} into the activation of the op making '{out}'")
        return code, c.outputs[0]

    def perm_for(self, vals: List[Val], rank: int):
        """The layout an elementwise op works in: that of its largest non-constant input of full rank."""
        best = None
        for v in vals:
            if v.const is None and v.rank == rank and v.flat is None:
                if best is None or np.prod(v.shape) > np.prod(best.shape):
                    best = v
        return best.perm if best is not None else None

    def operand(self, v: Val, perm, rank: int) -> _T:
        """v as an operand of a broadcasting op of rank `rank` working in layout perm."""
        if perm is None:
            if v.const is not None and v.const.ndim == 0:
                return self.get(v)
            return self.get(v, None)
        if v.const is not None:
            arr = v.const.reshape((1,) * (rank - v.const.ndim) + v.const.shape)
            if arr.size == 1:
                return self.get(Val(None, (1,), arr.dtype, const=arr.reshape(1)))
            return self.const(np.transpose(arr, perm), "const")
        if v.rank == rank:
            return self.get(v, perm)
        if v.rank == 0 or int(np.prod(v.shape)) == 1:
            return self.get(v, None)
        padded = (1,) * (rank - v.rank) + v.shape
        t = self.get(v, None)
        r = self.emit("Reshape", t, name="bcast", shape=list(padded))
        tmp = Val(r, padded, v.dtype)
        return self.get(tmp, perm)

    def _emit_all(self, deferred: bool = False) -> GraphBuilder:
        self.b = _Graph(self.name, producer="tinyinfer.convert.onnx")
        self.trace = [] if os.environ.get("TINF_ONNX_TRACE") else None
        self.used_names = set(self.in_types) | set(self.outputs)
        self.named_outputs = set()
        self.claimed = set()
        self.transposes: List[str] = []
        self.dql_count = 0
        self.fake_quant_count = 0
        self.vals: Dict[str, Val] = {}
        self.qconsts: Dict[str, tuple] = {}
        self.qconst_folded = set()
        for nm, (dt, sh) in self.in_types.items():
            t = self.b.input(nm, sh if sh else (1,), dt)
            self.vals[nm] = Val(t, sh, dt)
        for n in self.nodes:
            if n.dead:
                continue
            try:
                self.handlers[self._key(n)](self, n)
            except UnsupportedOpError as e:
                msg = e.message if hasattr(e, "message") else str(e)
                if n.label() not in msg:
                    msg = f"{msg.rstrip('.')} (in {n.label()}); nothing was written"
                raise UnsupportedOpError(msg) from None
        self._emit_outputs()
        if self.transposes:
            self.report.notes.append(f"{len(self.transposes)} layout Transpose(s) inserted: "
                                     + "; ".join(self.transposes[:8]) + (" ..." if len(self.transposes) > 8 else ""))
        if self.dql_count:
            self.report.notes.append(
                f"DynamicQuantizeLinear x{self.dql_count}: scale and zero point computed at run time (MaxPool2D over "
                f"the tensor for max and -min); round(x / scale) through an int16 Quantize, then + zero point and "
                f"saturation through a uint8 Quantize, as ONNX specifies")
        if self.trace is not None:
            print("\n".join(self.trace))
        if self.qconsts or any(v.kind != "real" for v in self.vals.values()):
            self.report.notes.append(
                "quantized ONNX ops are simulated: activations quantized by QuantizeLinear/QLinear* outputs go "
                "through Quantize (round half to even) + Dequantize and ops compute in float32; int8 weights stay "
                "int8 in the file with a Dequantize op" if self.keep_int8 else
                "quantized ONNX ops are simulated in float32; 8-bit weights were dequantized at conversion")
        return self.b if deferred else self.b.finish(self.report)

    def _emit_outputs(self):
        for nm in self.outputs:
            v = self.val(nm)
            if v.kind == "intf":
                raise UnsupportedOpError(f"onnx: graph output '{nm}' is an integer ({v.dtype}) tensor")
            if v.kind == "deq" and v.dtype.kind in "iu":
                if v.qt is None or v.perm is not None or v.flat is not None:
                    s, z, qd = v.q
                    qt = self.emit("Quantize", self.get(v, None), out_names=[nm], dtype=3 if qd == np.int8 else 4,
                                   mode=1)
                    self.b.quantization(qt[0], s, z)
                    self.named_outputs.add(nm)
                    continue
                v = Val(v.qt, v.shape, v.dtype)
            if v.t is not None and v.t.name == nm and v.perm is None and v.flat is None:
                continue
            if v.const is not None or v.flat is not None or v.perm is None:
                t = self.get(v, None)
                if t.name == nm:
                    continue
                self.emit("Reshape", t, out_names=[nm], shape=list(v.shape) or [1])
            else:
                src = v.perm
                inv = _inv(src)
                u = [inv[j] for j in range(v.rank)]
                self.emit("Transpose", v.t, out_names=[nm], perm=u)
            self.named_outputs.add(nm)
        for nm in self.outputs:
            self.b.output(self._tensor_by_name(nm))

    def _tensor_by_name(self, nm) -> _T:
        return _T(nm)

    def _out_shape(self, n: Node, i: int = 0) -> Tuple[int, ...]:
        return self._shape(n.outputs[i])


def _inferred_types(m) -> Dict[str, tuple]:
    """ONNX shape inference of model `m`: value name -> (numpy dtype, shape or None)."""
    import onnx
    try:
        inferred = onnx.shape_inference.infer_shapes(m, check_type=False, strict_mode=False, data_prop=True)
    except Exception as e:
        raise ModelFormatError(f"onnx: shape inference failed: {e}") from e
    types = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        if not vi.type.HasField("tensor_type"):
            continue
        tt = vi.type.tensor_type
        if tt.elem_type == 0:
            continue
        shape = None
        if tt.HasField("shape"):
            dims = []
            for d in tt.shape.dim:
                if d.HasField("dim_value") and d.dim_value >= 0:
                    dims.append(int(d.dim_value))
                else:
                    dims = None
                    break
            shape = tuple(dims) if dims is not None else None
        types[vi.name] = (_np_dtype(tt.elem_type), shape)
    return types


# The budget of a call into ONNX's own C++ code (shape inference), which a
# small hostile file can make run for minutes and allocate gigabytes: it
# runs in a forked child with this much more address space than the parent
# and this many seconds (TINYINFER_ONNX_BUDGET="SECONDS,MIB" overrides).
BUDGET_SECONDS = 30.0
BUDGET_BYTES = 2 << 30


def _budget():
    env = os.environ.get("TINYINFER_ONNX_BUDGET")
    if env:
        try:
            sec, mib = env.split(",")
            return float(sec), int(mib) << 20
        except ValueError:
            pass
    return BUDGET_SECONDS, BUDGET_BYTES


def bounded_call(fn, what: str):
    """fn() run in a forked child within the time and memory budget; its
    result comes back pickled. An error raised in the child is raised here
    (a ModelFormatError of the same message); over the budget raises
    ConvertError. Where fork is missing, fn() runs here."""
    from .. import ConvertError
    if not hasattr(os, "fork"):
        return fn()
    seconds, extra = _budget()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        code = 0
        try:
            os.close(r)
            try:
                import resource
                with open("/proc/self/statm") as f:
                    vsize = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
                resource.setrlimit(resource.RLIMIT_AS, (vsize + extra, vsize + extra))
            except (ImportError, OSError, ValueError):
                pass
            try:
                payload = pickle.dumps(("ok", fn()))
            except MemoryError:
                payload, code = pickle.dumps(("memory", "")), 3
            except BaseException as e:  # noqa: BLE001 - sent to the parent
                payload = pickle.dumps(("error", f"{type(e).__name__}: {e}" if not isinstance(e, ModelFormatError)
                                        else str(e)))
            view = memoryview(payload)
            while view:
                n = os.write(w, view)
                view = view[n:]
        finally:
            os._exit(code)
    os.close(w)
    chunks, deadline = [], time.monotonic() + seconds
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                raise ConvertError(f"{what} took over its budget of {seconds:.0f} s (a file asking for too much)")
            ready, _, _ = select.select([r], [], [], left)
            if ready:
                chunk = os.read(r, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    if not chunks:
        raise ConvertError(f"{what} ran out of its memory budget of {extra >> 20} MiB or failed "
                           f"(exit status {status})")
    kind, value = pickle.loads(b"".join(chunks))
    if kind == "memory":
        raise ConvertError(f"{what} ran out of its memory budget of {extra >> 20} MiB (a file asking for too much)")
    if kind == "error":
        raise ModelFormatError(value)
    return value


# The most a constant folded by the importer may hold: 2^28 elements
# (1 GiB of float32), far over any real model's folded shapes and masks,
# under the loader's 2^32 (the converter holds every folded constant in
# memory at once).
MAX_FOLD_ELEMENTS = 1 << 28


def _check_fold_size(n: Node, values, types) -> None:
    """Refuses to fold an op whose output would be over MAX_FOLD_ELEMENTS,
    from the inferred output shape or, for the ops whose output size is in
    their input values (ConstantOfShape, Expand, Tile, Range), from those
    values; before the reference evaluator allocates anything."""
    from .. import ConvertError

    def refuse(count):
        raise ConvertError(f"onnx: {n.label()} would fold to {count} elements, over the converter's limit of "
                           f"2^28 (a size in the file is too large)")

    for nm in n.outputs:
        t = types.get(nm) if nm else None
        if t is not None and t[1] is not None:
            count = math.prod(int(d) for d in t[1])
            if count > MAX_FOLD_ELEMENTS:
                refuse(count)
    try:
        if n.op == "ConstantOfShape" and values and values[0] is not None:
            count = math.prod(int(d) for d in np.asarray(values[0]).reshape(-1))
        elif n.op == "Expand" and len(values) > 1 and values[1] is not None:
            shape = [int(d) for d in np.asarray(values[1]).reshape(-1)]
            x = np.asarray(values[0]).shape
            r = max(len(x), len(shape))
            xs, ss = (1,) * (r - len(x)) + tuple(x), (1,) * (r - len(shape)) + tuple(shape)
            count = math.prod(max(abs(a), abs(b)) for a, b in zip(xs, ss))
        elif n.op == "Tile" and len(values) > 1 and values[1] is not None:
            count = np.asarray(values[0]).size * math.prod(abs(int(d)) for d in np.asarray(values[1]).reshape(-1))
        elif n.op == "Range" and len(values) == 3 and all(v is not None for v in values):
            start, limit, delta = (float(np.asarray(v).reshape(-1)[0]) for v in values)
            count = 0 if delta == 0 or not math.isfinite(start + limit + delta) else math.ceil(
                max(0.0, (limit - start) / delta))
            if delta == 0 or not math.isfinite(start + limit + delta):
                raise ConvertError(f"onnx: {n.label()} has a zero or non-finite delta/limit")
        else:
            return
    except (TypeError, ValueError, OverflowError, IndexError) as e:
        raise ConvertError(f"onnx: {n.label()}: bad constant inputs ({e})") from e
    if count > MAX_FOLD_ELEMENTS:
        refuse(count)
