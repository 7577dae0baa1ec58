"""TorchScript archives (torch.jit.save of scripted or traced modules, float or
quantize_dynamic'd) converted without torch and without running their code.

    tinyinfer.convert("model.pt", "model.tinf", input_shape=(1, 64))   # chosen by content

An archive is a zip: `data.pkl` (the module tree: attributes, parameters,
buffers, packed quantized weights), `constants.pkl` (tensors the code
refers to as CONSTANTS.cN), `data/` and `constants/` (raw storages), and
`code/` (each module's methods in TorchScript, a subset of Python). The
pickles are read by torch_weights' restricted unpickler (TorchScript objects
become inert ScriptObject stand-ins; only the tensor-rebuild functions,
quantized tensors and dtypes/qschemes are allowed as globals). The code is
parsed with `ast` and interpreted symbolically, never exec'd: Python values
(ints, floats, bools, lists, module attributes) are computed, so the
scripted modules' checks (`if torch.eq(dtype, 12): ...`, dropout's argument
checks) fold away; tensors are tinyinfer.nn Values, so each torch op becomes
what the builder (tinyinfer.convert.nn) makes of it, with its layouts
(NCHW in and out, NHWC inside). `ops.quantized.linear_dynamic` keeps
torch's int8 weights and scales: the model is int8-dynamic.

Shapes are static: the graph is traced at `input_shape` (other batch sizes
run on sessions of their own when the graph allows it). Anything that
depends on tensor data (an `if` on a tensor, a loop over one), an op without
a mapping, or a Python construct outside the serialized subset stops the
conversion with UnsupportedOpError naming the construct and the line of
the serialized code; nothing is guessed.
"""

from __future__ import annotations

import ast
import contextlib
import io
import math
import zipfile
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .._errors import InvalidArgumentError, ModelFormatError, ShapeError, TinyInferError, UnsupportedOpError
from . import nn
from .torch_weights import (QuantizedTensor, ScriptObject, _MmapReader, _open, _QTensorRef, _read_entry, _TensorRef,
                            _materialize, check_zip_byteorder, load_zip_pickle)

__all__ = ["is_torchscript", "read_archive", "import_model", "SUPPORTED_OPS"]

_MAX_CODE_BYTES = 64 << 20
_MAX_CALL_DEPTH = 200
_MAX_STEPS = 2_000_000
_MAX_PY_ITEMS = 1 << 20     # a list or string the code builds
_MAX_INT_BITS = 256

# torch ScalarType codes as TorchScript writes them
_SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32",
                 7: "float64", 11: "bool", 12: "qint8", 13: "quint8", 14: "qint32", 15: "bfloat16"}
_DTYPE_CODES = {v: k for k, v in _SCALAR_TYPES.items()}


def _err(msg: str) -> ModelFormatError:
    return ModelFormatError(msg)


# ---------------------------------------------------------------------------------------------
# the archive
# ---------------------------------------------------------------------------------------------

class Archive:
    """A TorchScript archive read without torch: `root` (the ScriptObject of the
    saved module, tensors as numpy arrays / QuantizedTensor), `constants`
    (the tuple of CONSTANTS), and the code files parsed on demand."""

    def __init__(self, where: str, prefix: str, root, constants, code: Dict[str, bytes]):
        self.where, self.prefix, self.root, self.constants = where, prefix, root, constants
        self._code_src = code              # "__torch__/torch/nn/modules/linear.py" -> source bytes
        self._parsed: Dict[str, Tuple[ast.Module, List[str]]] = {}

    def code_file(self, path: str):
        """(ast.Module, source lines) of code/<path>, or None when the archive has no such file."""
        if path in self._parsed:
            return self._parsed[path]
        src = self._code_src.get(path)
        if src is None:
            return None
        try:
            text = src.decode("utf-8")
            tree = ast.parse(text, filename=f"code/{path}")
        except (UnicodeDecodeError, SyntaxError, ValueError, RecursionError, MemoryError) as e:
            raise _err(f"{self.where}: code/{path} is not valid TorchScript source: {e}") from None
        self._parsed[path] = (tree, text.splitlines())
        return self._parsed[path]

    def find(self, qualname: str):
        """The class or function definition named `qualname` (`__torch__.a.b.Name`): (node, file, lines)."""
        parts = qualname.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            path = "/".join(parts[:cut]) + ".py"
            f = self.code_file(path)
            if f is None:
                continue
            node = _lookup(f[0].body, parts[cut:])
            if node is not None:
                return node, path, f[1]
        return None


def _lookup(body, names):
    for st in body:
        if isinstance(st, (ast.ClassDef, ast.FunctionDef)) and st.name == names[0]:
            if len(names) == 1:
                return st
            if isinstance(st, ast.ClassDef):
                return _lookup(st.body, names[1:])
    return None


@contextlib.contextmanager
def _zip(source):
    """(ZipFile or None when `source` is not a readable zip, total size, description) of a path or bytes."""
    buf, total, where, closer = _open(source)
    try:
        stream = _MmapReader(buf) if not isinstance(buf, bytes) else io.BytesIO(buf)
        try:
            zf = zipfile.ZipFile(stream)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError):
            zf = None
        try:
            yield zf, total, where
        finally:
            if zf is not None:
                zf.close()
    finally:
        if closer is not None:
            closer.close()


def is_torchscript(source) -> bool:
    """True when `source` (a path or bytes) is a zip with data.pkl and code/ or constants.pkl."""
    with _zip(source) as (zf, _total, _where):
        names = zf.namelist() if zf is not None else []
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names) and \
        any(n.endswith("data.pkl") for n in names)


def _resolve(obj, depth: int = 0):
    """Tensor references -> numpy arrays / QuantizedTensor, through ScriptObject states, dicts, lists, tuples."""
    if depth > 200:
        raise _err("the module tree nests too deeply")
    if isinstance(obj, (_TensorRef, _QTensorRef)):
        return _materialize(obj)
    if isinstance(obj, ScriptObject):
        st = obj.state
        if isinstance(st, dict):
            obj.state = {k: _resolve(v, depth + 1) for k, v in st.items()}
        elif isinstance(st, tuple):
            obj.state = tuple(_resolve(v, depth + 1) for v in st)
        return obj
    if isinstance(obj, tuple):
        return tuple(_resolve(v, depth + 1) for v in obj)
    if isinstance(obj, list):
        return [_resolve(v, depth + 1) for v in obj]
    if isinstance(obj, dict):
        return {k: _resolve(v, depth + 1) for k, v in obj.items()}
    return obj


def read_archive(source) -> Archive:
    """Reads a TorchScript archive (path or bytes) without torch."""
    with _zip(source) as (zf, total, where):
        if zf is None:
            raise _err(f"{where}: not a readable zip archive (truncated or corrupt?)")
        try:
            infos = zf.infolist()
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
            raise _err(f"{where}: not a readable zip archive: {e}") from None
        by_name = {i.filename: i for i in infos}
        pkls = [n for n in by_name if n.endswith("/data.pkl") and n.count("/") == 1] or \
            [n for n in by_name if n == "data.pkl"]
        if len(pkls) != 1:
            raise _err(f"{where}: a TorchScript archive has one <name>/data.pkl; found {len(pkls)}")
        prefix = pkls[0][:-len("data.pkl")]
        check_zip_byteorder(zf, by_name, prefix, total, where)

        def load_pickle(name: str, storage_dir: str):
            if prefix + name not in by_name:
                return None
            return load_zip_pickle(zf, by_name, prefix, name, storage_dir, total, where, script_objects=True)

        root = load_pickle("data.pkl", "data")
        consts = load_pickle("constants.pkl", "constants")
        code: Dict[str, bytes] = {}
        size = 0
        for n, info in by_name.items():
            if n.startswith(prefix + "code/") and n.endswith(".py"):
                size += info.file_size
                if size > _MAX_CODE_BYTES:
                    raise _err(f"{where}: more than {_MAX_CODE_BYTES} bytes of code")
                code[n[len(prefix + "code/"):]] = _read_entry(zf, info, total, where)
    if not isinstance(root, ScriptObject) or not isinstance(root.state, dict):
        raise _err(f"{where}: data.pkl does not hold a TorchScript module (got {type(root).__name__})")
    if consts is None:
        consts = ()
    if not isinstance(consts, tuple):
        raise _err(f"{where}: constants.pkl does not hold a tuple")
    return Archive(where, prefix, _resolve(root), _resolve(consts), code)


# ---------------------------------------------------------------------------------------------
# the interpreter
# ---------------------------------------------------------------------------------------------

class _QN:
    """A qualified name being built (`torch`, `torch.nn.functional`, `ops.quantized`, `__torch__.x.y`)."""
    __slots__ = ("path",)

    def __init__(self, path: str):
        self.path = path

    def __repr__(self):
        return self.path


class _Type:
    """A type written in the code (Tensor, Optional[int], ...): only annotate / uninitialized take it."""
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


_TYPE_NAMES = {"Tensor", "Optional", "List", "Tuple", "Dict", "NoneType", "Any", "Device", "number", "Union",
               "Future", "Final"}


class _Bound:
    """A method of a ScriptObject, or a tensor method (x.size) taken as a value."""
    __slots__ = ("obj", "name")

    def __init__(self, obj, name: str):
        self.obj, self.name = obj, name


class _Return(Exception):
    def __init__(self, value):
        self.value = value


_DEVICE = "cpu"


class _Frame:
    __slots__ = ("path", "lines", "env", "node")

    def __init__(self, path, lines, env):
        self.path, self.lines, self.env, self.node = path, lines, env, None


class Interpreter:
    def __init__(self, arc: Archive, tracer):
        self.arc, self.t = arc, tracer
        self.frames: List[_Frame] = []
        self.ops_in: Counter = Counter()
        self.steps = 0
        self.current_op = ""
        self.paths: Dict[int, str] = {}
        self._walk(arc.root, "")
        self.setattr_ok: set = set()

    def restore(self, obj, seen=None):
        """Runs the `__setstate__` of objects the archive pickled as a tuple (torch.ao's static quantized
        Conv2d keeps its geometry and weights that way), children first, as torch.jit.load does."""
        seen = set() if seen is None else seen
        if id(obj) in seen:
            return
        seen.add(id(obj))
        st = obj.state
        for v in (st.values() if isinstance(st, dict) else st if isinstance(st, tuple) else ()):
            if isinstance(v, ScriptObject):
                self.restore(v, seen)
        if isinstance(st, tuple):
            found = self.arc.find(obj.qualname)
            if found is not None and isinstance(found[0], ast.ClassDef) and any(
                    isinstance(f, ast.FunctionDef) and f.name == "__setstate__" for f in found[0].body):
                obj.state = {}
                self.setattr_ok.add(id(obj))
                try:
                    self.call_method(obj, "__setstate__", [st], {})
                finally:
                    self.setattr_ok.discard(id(obj))

    def _walk(self, obj, path):
        if id(obj) in self.paths:
            return
        self.paths[id(obj)] = path
        if isinstance(obj.state, dict):
            for k, v in obj.state.items():
                if isinstance(v, ScriptObject):
                    self._walk(v, f"{path}.{k}" if path else k)

    # -- errors -------------------------------------------------------------------------------
    def where(self) -> str:
        for f in reversed(self.frames):
            if f.node is not None and getattr(f.node, "lineno", None):
                ln = f.node.lineno
                text = f.lines[ln - 1].strip() if 0 < ln <= len(f.lines) else ""
                return f"code/{f.path}:{ln}: `{text[:160]}`"
        return "code"

    def unsupported(self, what: str) -> UnsupportedOpError:
        e = UnsupportedOpError(f"TorchScript: {what}, at {self.where()}")
        e._located = True
        return e

    # -- running ------------------------------------------------------------------------------
    def call_method(self, obj: ScriptObject, name: str, args, kwargs):
        found = self.arc.find(obj.qualname)
        if found is None or not isinstance(found[0], ast.ClassDef):
            raise self.unsupported(f"no code for class {obj.qualname} (calling its {name})")
        cls, path, lines = found
        fdef = next((s for s in cls.body if isinstance(s, ast.FunctionDef) and s.name == name), None)
        if fdef is None:
            raise self.unsupported(f"{obj.qualname} has no method {name}")
        scope = self.paths.get(id(obj))
        if scope is not None:
            self.t.scope_stack.append(scope or "")
        try:
            return self.run(fdef, path, lines, [obj] + list(args), kwargs)
        finally:
            if scope is not None:
                self.t.scope_stack.pop()

    def run(self, fdef: ast.FunctionDef, path: str, lines, args, kwargs):
        if len(self.frames) >= _MAX_CALL_DEPTH:
            raise self.unsupported("calls nest too deeply (recursion?)")
        a = fdef.args
        if a.vararg or a.kwarg or a.kwonlyargs or getattr(a, "posonlyargs", []):
            raise self.unsupported(f"function {fdef.name} has *args / **kwargs / keyword-only parameters")
        names = [p.arg for p in a.args]
        if len(args) > len(names):
            raise self.unsupported(f"{fdef.name} takes {len(names)} arguments, got {len(args)}")
        env: Dict[str, Any] = {}
        defaults = dict(zip(names[len(names) - len(a.defaults):], a.defaults))
        frame = _Frame(path, lines, env)
        self.frames.append(frame)
        try:
            for i, n in enumerate(names):
                if i < len(args):
                    env[n] = args[i]
                elif n in kwargs:
                    env[n] = kwargs[n]
                elif n in defaults:
                    env[n] = self.eval(defaults[n])
                else:
                    raise self.unsupported(f"{fdef.name}: missing argument {n}")
            extra = set(kwargs) - set(names)
            if extra:
                raise self.unsupported(f"{fdef.name}: unknown keyword argument(s) {sorted(extra)}")
            try:
                self.exec_block(fdef.body)
            except _Return as r:
                return r.value
            return None
        finally:
            self.frames.pop()

    def exec_block(self, body):
        for st in body:
            self.exec(st)

    def exec(self, st):
        try:
            self._exec(st)
        except (_Return, TinyInferError):
            raise
        except (TypeError, ValueError, IndexError, KeyError, AttributeError, ZeroDivisionError, OverflowError) as e:
            raise self.unsupported(f"the code fails on its own values ({type(e).__name__}: {str(e)[:200]})") \
                from None

    def _exec(self, st):
        f = self.frames[-1]
        f.node = st
        self.steps += 1
        if self.steps > _MAX_STEPS:
            raise self.unsupported("the code runs too long (a loop over large Python data?)")
        if isinstance(st, ast.Assign):
            v = self.eval(st.value)
            f.node = st
            for tgt in st.targets:
                self.assign(tgt, v)
        elif isinstance(st, ast.AnnAssign):
            if st.value is not None:
                self.assign(st.target, self.eval(st.value))
        elif isinstance(st, ast.Return):
            raise _Return(None if st.value is None else self.eval(st.value))
        elif isinstance(st, ast.Expr):
            if isinstance(st.value, ast.Constant) and isinstance(st.value.value, str):
                return  # a docstring
            self.eval(st.value)
        elif isinstance(st, ast.If):
            c = self.eval(st.test)
            f.node = st
            self.exec_block(st.body if self.truth(c, "if") else st.orelse)
        elif isinstance(st, ast.For):
            it = self.eval(st.iter)
            f.node = st
            if isinstance(it, nn.Value) or not isinstance(it, (list, tuple, range)):
                raise self.unsupported(f"a for loop over {type(it).__name__} (only over Python lists, tuples "
                                       f"and ranges of known length)")
            if st.orelse:
                raise self.unsupported("for ... else")
            for v in it:
                self.assign(st.target, v)
                self.exec_block(st.body)
        elif isinstance(st, ast.Pass):
            pass
        elif isinstance(st, ast.AugAssign):
            cur = self.eval(st.target)
            val = self.eval(st.value)
            self.assign(st.target, self.binop(type(st.op), cur, val))
        else:
            raise self.unsupported(f"the statement `{type(st).__name__}` (data-dependent control flow or a Python "
                                   f"construct outside TorchScript's serialized subset)")

    def assign(self, tgt, v):
        if isinstance(tgt, ast.Name):
            self.frames[-1].env[tgt.id] = v
        elif isinstance(tgt, (ast.Tuple, ast.List)):
            if isinstance(v, nn.Value) or not isinstance(v, (tuple, list)) or len(v) != len(tgt.elts):
                raise self.unsupported(f"unpacking {type(v).__name__} into {len(tgt.elts)} names")
            for t_, x in zip(tgt.elts, v):
                self.assign(t_, x)
        elif isinstance(tgt, ast.Attribute):
            obj = self.eval(tgt.value)
            if not isinstance(obj, ScriptObject) or not isinstance(obj.state, dict):
                raise self.unsupported(f"assigning an attribute of {type(obj).__name__}")
            if id(obj) in self.setattr_ok:  # inside its __setstate__
                obj.state[tgt.attr] = v
                return
            raise self.unsupported(f"the forward pass assigns {obj.qualname}.{tgt.attr} (module state changes at "
                                   f"run time)")
        else:
            raise self.unsupported(f"assignment to {type(tgt).__name__}")

    def truth(self, c, what: str) -> bool:
        if isinstance(c, nn.Value):
            raise self.unsupported(f"data-dependent control flow (an {what} on a tensor's values)")
        if isinstance(c, np.ndarray):
            if c.size != 1:
                raise self.unsupported(f"`{what}` on a tensor of {c.size} elements")
            return bool(c.reshape(-1)[0])
        return bool(c)

    # -- expressions --------------------------------------------------------------------------
    def eval(self, e):
        m = getattr(self, "e_" + type(e).__name__, None)
        if m is None:
            raise self.unsupported(f"the expression `{type(e).__name__}`")
        return m(e)

    def e_Constant(self, e):
        return e.value

    def e_Name(self, e):
        env = self.frames[-1].env
        if e.id in env:
            return env[e.id]
        if e.id in ("torch", "ops", "__torch__", "math"):
            return _QN(e.id)
        if e.id == "CONSTANTS":
            return _QN("CONSTANTS")
        if e.id in _BUILTINS:
            return _QN(e.id)
        if e.id in _TYPE_NAMES:
            return _Type(e.id)
        raise self.unsupported(f"the name {e.id!r} is not defined")

    def e_List(self, e):
        return [self.eval(x) for x in e.elts]

    def e_Tuple(self, e):
        return tuple(self.eval(x) for x in e.elts)

    def e_Dict(self, e):
        return {self.eval(k): self.eval(v) for k, v in zip(e.keys, e.values)}

    def e_UnaryOp(self, e):
        v = self.eval(e.operand)
        if isinstance(e.op, ast.Not):
            return not self.truth(v, "not")
        if isinstance(e.op, ast.USub):
            return -v
        if isinstance(e.op, ast.UAdd):
            return v
        raise self.unsupported(f"the operator {type(e.op).__name__}")

    def binop(self, op, a, b):
        table = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.FloorDiv: "floordiv",
                 ast.Mod: "remainder", ast.Pow: "pow", ast.MatMult: "matmul"}
        name = table.get(op)
        if name is None:
            raise self.unsupported(f"the operator {op.__name__}")
        return self.call_qn(f"torch.{name}", [a, b], {})

    def e_BinOp(self, e):
        return self.binop(type(e.op), self.eval(e.left), self.eval(e.right))

    def e_BoolOp(self, e):
        is_and = isinstance(e.op, ast.And)
        v = None
        for x in e.values:
            v = self.eval(x)
            if self.truth(v, "and" if is_and else "or") != is_and:
                return v
        return v

    def e_Compare(self, e):
        left = self.eval(e.left)
        for op, rnode in zip(e.ops, e.comparators):
            right = self.eval(rnode)
            if isinstance(op, (ast.Is, ast.IsNot)):
                r = (left is right) or (left is None and right is None)
                r = r if isinstance(op, ast.Is) else not r
            else:
                name = {ast.Eq: "eq", ast.NotEq: "ne", ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge",
                        ast.In: "__contains__r", ast.NotIn: "__notcontains__r"}.get(type(op))
                if name is None:
                    raise self.unsupported(f"the comparison {type(op).__name__}")
                if name.endswith("r"):
                    r = (left in right) if name == "__contains__r" else (left not in right)
                else:
                    r = self.call_qn(f"torch.{name}", [left, right], {})
            if not r:
                return False
            left = right
        return True

    def e_IfExp(self, e):
        return self.eval(e.body) if self.truth(self.eval(e.test), "if-expression") else self.eval(e.orelse)

    def e_Subscript(self, e):
        v = self.eval(e.value)
        if isinstance(v, _Type):
            return v  # Optional[Tensor], List[int], ...: types only annotate
        idx = self.eval(e.slice)
        if isinstance(v, (list, tuple, str, dict)) and not isinstance(idx, nn.Value):
            try:
                return v[idx]
            except (IndexError, KeyError, TypeError) as ex:
                raise self.unsupported(f"indexing {type(v).__name__} with {idx!r}: {ex}") from None
        raise self.unsupported(f"subscripting {type(v).__name__}")

    def e_Slice(self, e):
        return slice(*(None if x is None else self.eval(x) for x in (e.lower, e.upper, e.step)))

    def e_Attribute(self, e):
        base = self.eval(e.value)
        a = e.attr
        if isinstance(base, _QN):
            if base.path == "CONSTANTS":
                if not (a.startswith("c") and a[1:].isdigit()) or int(a[1:]) >= len(self.arc.constants):
                    raise self.unsupported(f"CONSTANTS.{a} is not in constants.pkl")
                return self.arc.constants[int(a[1:])]
            return _QN(f"{base.path}.{a}")
        if isinstance(base, ScriptObject):
            if a == "training":
                return False  # inference: whatever mode the module was saved in
            st = base.state
            if isinstance(st, dict) and a in st:
                return st[a]
            found = self.arc.find(base.qualname)
            if found is not None and isinstance(found[0], ast.ClassDef):
                for s in found[0].body:
                    if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name) and s.target.id == a \
                            and s.value is not None:
                        return self.eval(s.value)
                    if isinstance(s, ast.FunctionDef) and s.name == a:
                        return _Bound(base, a)
            raise self.unsupported(f"{base.qualname} has no attribute {a!r}")
        if isinstance(base, (nn.Value, np.ndarray, QuantizedTensor)):
            if a == "dtype":
                return _dtype_code(base)
            if a == "shape":
                return list(base.shape)
            if a == "device":
                return _DEVICE
            if a == "is_quantized":
                return isinstance(base, QuantizedTensor)
            return _Bound(base, a)
        if isinstance(base, str) and a == "type":
            return base
        raise self.unsupported(f"the attribute {a!r} of {type(base).__name__}")

    def e_Call(self, e):
        fn = e.func
        args = []
        for x in e.args:
            if isinstance(x, ast.Starred):
                raise self.unsupported("*args in a call")
            args.append(self.eval(x))
        kwargs = {}
        for k in e.keywords:
            if k.arg is None:
                raise self.unsupported("**kwargs in a call")
            kwargs[k.arg] = self.eval(k.value)
        target = self.eval(fn)
        self.frames[-1].node = e if hasattr(e, "lineno") else self.frames[-1].node
        if isinstance(target, _Bound):
            if isinstance(target.obj, ScriptObject):
                return self.call_method(target.obj, target.name, args, kwargs)
            return self.call_qn(f"torch.{target.name}", [target.obj] + args, kwargs)
        if isinstance(target, _QN):
            return self.call_qn(target.path, args, kwargs)
        raise self.unsupported(f"calling a {type(target).__name__}")

    def call_qn(self, path: str, args, kwargs):
        if path.startswith("__torch__."):
            found = self.arc.find(path)
            if found is None:
                raise self.unsupported(f"no code for {path}")
            node, fpath, lines = found
            if not isinstance(node, ast.FunctionDef):
                raise self.unsupported(f"constructing a {path} object at run time")
            return self.run(node, fpath, lines, args, kwargs)
        h = _OPS.get(path)
        self.current_op = path
        if h is None:
            raise self.unsupported(f"the op {path} has no tinyinfer mapping")
        values = list(args) + list(kwargs.values())
        if not path.startswith("ops.prim.") and any(isinstance(a, nn.Value) for a in values):
            self.ops_in[path] += 1
        try:
            return h(self, *args, **kwargs)
        except TypeError as ex:
            raise self.unsupported(f"{path} called with arguments it does not take ({ex})") from None
        except TinyInferError as ex:
            if getattr(ex, "_located", False):
                raise
            new = type(ex)(f"{ex.message if hasattr(ex, 'message') else ex} (TorchScript op {path}, at "
                           f"{self.where()})")
            new._located = True
            raise new from None


_BUILTINS = {"int", "float", "bool", "len", "range", "annotate", "unchecked_cast", "uninitialized", "isinstance",
             "str", "min", "max", "abs", "getattr", "list", "tuple"}


def _dtype_code(x) -> int:
    if isinstance(x, QuantizedTensor):
        return {"int8": 12, "uint8": 13, "int32": 14}[x.values.dtype.name]
    return _DTYPE_CODES.get(np.dtype(x.dtype).name, 6)


# ---------------------------------------------------------------------------------------------
# op handlers
# ---------------------------------------------------------------------------------------------

_OPS: Dict[str, Callable] = {}


def _op(*names):
    def deco(fn):
        for n in names:
            _OPS[n] = fn
        return fn
    return deco


def _is_v(x) -> bool:
    return isinstance(x, nn.Value)


def _num(x) -> bool:
    return isinstance(x, (int, float, bool, np.integer, np.floating)) and not isinstance(x, np.ndarray)


def _need_v(ip, x, who):
    if not _is_v(x):
        raise ip.unsupported(f"{who} on a {type(x).__name__} (expected a tensor computed from the inputs)")
    return x


def _arr(x):
    if isinstance(x, QuantizedTensor):
        return x.dequantize()
    return x


# builtins ---------------------------------------------------------------------------------------

@_op("int")
def _int(ip, x=0):
    if _is_v(x):
        raise ip.unsupported("int() of a tensor (data-dependent value)")
    return int(np.asarray(x).reshape(-1)[0]) if isinstance(x, np.ndarray) else int(x)


@_op("float")
def _float(ip, x=0.0):
    if _is_v(x):
        raise ip.unsupported("float() of a tensor (data-dependent value)")
    return float(np.asarray(x).reshape(-1)[0]) if isinstance(x, np.ndarray) else float(x)


@_op("bool")
def _bool(ip, x=False):
    return ip.truth(x, "bool()")


@_op("str")
def _str(ip, x=""):
    return str(x)


@_op("len", "torch.len")
def _len(ip, x):
    if _is_v(x):
        return x.shape[0]
    return len(x)


@_op("range")
def _range(ip, *a):
    if any(not isinstance(v, int) for v in a):
        raise ip.unsupported("range() over values that are not known integers")
    return range(*a)


@_op("annotate")
def _annotate(ip, typ, v):
    return v


@_op("unchecked_cast")
def _unchecked_cast(ip, typ, v):
    return v


@_op("uninitialized")
def _uninit(ip, typ):
    return None


@_op("isinstance")
def _isinstance(ip, v, typ):
    raise ip.unsupported("isinstance() checks")


@_op("min", "max")
def _minmax_builtin(ip, *a):
    raise ip.unsupported("Python min()/max()")


@_op("getattr")
def _getattr(ip, obj, name, *default):
    if isinstance(obj, ScriptObject) and isinstance(obj.state, dict) and isinstance(name, str) and name in obj.state:
        return obj.state[name]  # Sequential / ModuleList children: getattr(self, "0")
    raise ip.unsupported(f"getattr({type(obj).__name__}, {name!r})")


@_op("list", "tuple")
def _listfn(ip, x=()):
    if isinstance(x, range):
        _bounded(ip, x)
    return list(x)


@_op("ops.prim.RaiseException")
def _raise(ip, msg="", cls=None, *rest):
    raise ip.unsupported(f"the model raises {cls or 'an exception'} ({str(msg)[:200]!r}) for these inputs: the code "
                         f"path torch would take at this shape fails")


@_op("ops.prim.NumToTensor", "ops.prim.unchecked_unwrap_optional")
def _passthrough(ip, x):
    return x  # NumToTensor: a known number stays a number (int() of it gives it back)


@_op("ops.prim.dtype")
def _prim_dtype(ip, x):
    return _dtype_code(x)


@_op("ops.prim.device")
def _prim_device(ip, x):
    return _DEVICE


@_op("ops.prim.type")
def _prim_type(ip, device):
    return str(device)


@_op("torch.tensor")
def _tensor(ip, data, dtype=None, device=None, requires_grad=False):
    if _is_v(data) or (isinstance(data, (list, tuple)) and any(_is_v(x) for x in data)):
        raise ip.unsupported("torch.tensor() of run-time values")
    a = np.asarray(data)
    if dtype is not None and dtype in _SCALAR_TYPES:
        return a.astype(_SCALAR_TYPES[dtype])
    return a.astype(np.float32) if a.dtype.kind == "f" else a.astype(np.int64) if a.dtype.kind in "iu" else a


def _np_dtype_of(dtype, default):
    if dtype is None:
        return np.dtype(default)
    if dtype not in _SCALAR_TYPES:
        raise ModelFormatError(f"TorchScript: unknown dtype code {dtype!r}")
    return np.dtype(_SCALAR_TYPES[dtype])


@_op("torch.arange")
def _arange(ip, *a, dtype=None, layout=None, device=None, pin_memory=False):
    """torch.arange(end) / (start, end) / (start, end, step) of known numbers: a constant."""
    nums = [_arr(x) for x in a if not isinstance(x, (str, type(None)))]
    if any(_is_v(x) for x in nums) or not 1 <= len(nums) <= 3:
        raise ip.unsupported("torch.arange of run-time values")
    nums = [np.asarray(x).reshape(-1)[0].item() if isinstance(x, np.ndarray) else x for x in nums]
    start, end, step = (0, nums[0], 1) if len(nums) == 1 else (nums[0], nums[1], nums[2] if len(nums) == 3 else 1)
    if step == 0:
        raise ip.unsupported("torch.arange with step 0")
    _bounded(ip, range(max(0, int(math.ceil((end - start) / step)))))
    default = np.int64 if all(isinstance(x, (int, np.integer)) for x in (start, end, step)) else np.float32
    return np.arange(start, end, step).astype(_np_dtype_of(dtype, default))


def _filled(ip, size, value, dtype, default):
    size = [int(_arr(d)) for d in (size if isinstance(size, (list, tuple)) else [size])]
    if any(_is_v(d) or d < 0 for d in size):
        raise ip.unsupported("a tensor of a run-time or negative size")
    _bounded(ip, range(int(np.prod(size)) if size else 1))
    return np.full(size, value, dtype=_np_dtype_of(dtype, default))


def _factory(kind):
    def h(ip, *a, dtype=None, layout=None, device=None, pin_memory=False, requires_grad=False, names=None):
        a = list(a)
        like = a.pop(0) if kind.startswith("new_") else None
        value = 1 if kind.endswith("ones") else 0 if kind.endswith("zeros") else None
        if value is None:
            if len(a) < 2:
                raise ip.unsupported(f"torch.{kind} without a fill value")
            value = _arr(a[1])
            if _is_v(value):
                raise ip.unsupported(f"torch.{kind} with a run-time fill value")
        default = like.dtype if like is not None else (np.float32 if not isinstance(value, (int, bool)) or
                                                        kind.endswith(("ones", "zeros")) else np.int64)
        return _filled(ip, a[0], value, dtype, default)
    return h


for _k in ("ones", "zeros", "full", "new_ones", "new_zeros", "new_full"):
    _OPS[f"torch.{_k}"] = _factory(_k)


@_op("torch.device")
def _device(ip, name="cpu", index=None):
    return str(name)


@_op("torch.format")
def _format(ip, fmt, *a):
    try:
        return _bounded(ip, str(fmt).format(*[x if isinstance(x, (int, float, str, bool)) else type(x).__name__
                                               for x in a]))
    except (ValueError, IndexError, KeyError, TypeError):
        return str(fmt)


@_op("torch.warn", "ops.aten.warn")
def _warn(ip, *a, **k):
    return None


@_op("torch.__contains__")
def _contains(ip, container, item):
    if _is_v(container):
        raise ip.unsupported("`in` on a run-time tensor")
    return item in container


@_op("torch.__is__")
def _is(ip, a, b):
    return a is b or (a is None and b is None)


@_op("torch.__isnot__")
def _isnot(ip, a, b):
    return not _is(ip, a, b)


@_op("torch.__not__")
def _not(ip, a):
    return not ip.truth(a, "not")


@_op("torch.is_grad_enabled", "torch.is_autocast_enabled", "torch.is_autocast_cpu_enabled",
     "torch.jit.is_scripting", "torch._C._get_tracing_state", "torch.jit.is_tracing")
def _false(ip, *a):
    return False


@_op("ops.prim.is_nested", "ops.prim.is_cuda", "ops.prim.is_sparse", "ops.prim.is_mkldnn", "ops.prim.is_meta",
     "ops.prim.is_quantized", "ops.prim.requires_grad", "torch.is_floating_point_or_complex")
def _false_of_tensor(ip, x, *a):
    return False


@_op("ops.prim.is_cpu")
def _true_of_tensor(ip, x, *a):
    return True


@_op("torch.is_floating_point")
def _is_float(ip, x):
    return np.dtype(x.dtype).kind == "f"


@_op("torch.any")
def _any(ip, x, *a):
    if _is_v(x):
        raise ip.unsupported("torch.any on a run-time tensor")
    return bool(np.any(np.asarray(x))) if isinstance(x, np.ndarray) else any(x)


@_op("torch.all")
def _all(ip, x, *a):
    if _is_v(x):
        raise ip.unsupported("torch.all on a run-time tensor")
    return bool(np.all(np.asarray(x))) if isinstance(x, np.ndarray) else all(x)


@_op("torch.is_scripting")
def _true(ip, *a):
    return True


@_op("torch.append", "torch.list_append")
def _append(ip, lst, v):
    if not isinstance(lst, list):
        raise ip.unsupported("append to a non-list")
    _bounded(ip, range(len(lst) + 1))
    lst.append(v)
    return lst


@_op("torch.__getitem__", "torch.select_list")
def _getitem(ip, lst, i):
    if _is_v(lst):
        raise ip.unsupported("indexing a tensor with __getitem__")
    return lst[i]


# concrete / tensor arithmetic -------------------------------------------------------------------

def _bounded(ip, v):
    """Refuses Python values the serialized code could blow up (a list doubled in a loop, 10 ** 10 ** 10)."""
    if isinstance(v, (list, tuple, str, range)) and len(v) > _MAX_PY_ITEMS:
        raise ip.unsupported(f"a Python {type(v).__name__} of {len(v)} items")
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > _MAX_INT_BITS:
        raise ip.unsupported("an integer beyond 256 bits")
    return v


def _concrete_or(ip, name, a, b, fn, tensor_op: Optional[str]):
    if _is_v(a) or _is_v(b):
        if tensor_op is None:
            raise ip.unsupported(f"torch.{name} on tensors (comparisons and logical ops on run-time tensors need "
                                 f"core ops tinyinfer does not have yet)")
        if not _is_v(a):  # constant op Value
            return nn._binary(tensor_op, b, _arr(a), reverse=True)
        return nn._binary(tensor_op, a, _arr(b))
    if isinstance(a, QuantizedTensor) or isinstance(b, QuantizedTensor):
        a, b = _arr(a), _arr(b)
    if name == "pow" and isinstance(b, int) and abs(b) > _MAX_INT_BITS:
        raise ip.unsupported(f"a power with exponent {b}")
    for v in (a, b):
        _bounded(ip, v)
    if isinstance(a, (list, tuple, str)) and isinstance(b, int) and name == "mul":
        _bounded(ip, range(len(a) * max(b, 0)))
    try:
        return _bounded(ip, fn(a, b))
    except (ZeroDivisionError, OverflowError, ValueError, TypeError) as e:
        raise ip.unsupported(f"torch.{name}({type(a).__name__}, {type(b).__name__}) fails: {e}") from None


@_op("torch.add", "torch.add_")
def _add(ip, a, b, alpha=1):
    if (isinstance(a, list) and isinstance(b, list)) or (isinstance(a, str) and isinstance(b, str)):
        return _bounded(ip, range(len(a) + len(b))) and a + b
    if alpha != 1:
        b = _mul(ip, b, alpha)
    return _concrete_or(ip, "add", a, b, lambda x, y: x + y, "Add")


@_op("torch.sub", "torch.sub_", "torch.rsub")
def _sub(ip, a, b, alpha=1):
    if alpha != 1:
        b = _mul(ip, b, alpha)
    return _concrete_or(ip, "sub", a, b, lambda x, y: x - y, "Sub")


@_op("torch.mul", "torch.mul_")
def _mul(ip, a, b):
    return _concrete_or(ip, "mul", a, b, lambda x, y: x * y, "Mul")


@_op("torch.div", "torch.div_", "torch.true_divide")
def _div(ip, a, b, rounding_mode=None):
    if rounding_mode is not None:
        if _is_v(a) or _is_v(b):
            raise ip.unsupported(f"torch.div(rounding_mode={rounding_mode!r}) on tensors")
        q = a / b
        return math.floor(q) if rounding_mode == "floor" else math.trunc(q)
    return _concrete_or(ip, "div", a, b, lambda x, y: x / y, "Div")


@_op("torch.floordiv")
def _floordiv(ip, a, b):
    return _concrete_or(ip, "floordiv", a, b, lambda x, y: x // y, None)


@_op("torch.remainder")
def _remainder(ip, a, b):
    return _concrete_or(ip, "remainder", a, b, lambda x, y: x % y, None)


@_op("torch.pow")
def _pow(ip, a, b):
    if _is_v(a) and _num(b) and float(b) == 2.0:
        return nn._binary("Mul", a, a)
    if _is_v(a) and _num(b) and float(b) == 0.5:
        return a.sqrt()
    if _is_v(a) and _num(b) and float(b) == 1.0:
        return a
    return _concrete_or(ip, "pow", a, b, lambda x, y: x ** y, None)


@_op("torch.neg")
def _neg(ip, a):
    return -a


# run-time comparisons, logical ops, Where, Cast, Expand, indexing ------------------------------------

_CMP_OPS = {"eq": "Equal", "ne": "NotEqual", "lt": "Less", "le": "LessEqual", "gt": "Greater", "ge": "GreaterEqual"}
_LOGIC_OPS = {"and": "LogicalAnd", "or": "LogicalOr", "xor": "LogicalXor"}


def _rt(ip, op, args, dtype=None, out_dtype=None, **attrs):
    """Emits runtime op `op` on `args` (Values in torch's layout, or constants cast to `dtype`, the first
    Value's dtype by default), numpy-broadcast; the output has `out_dtype` (default: that dtype)."""
    vals = [a for a in args if _is_v(a)]
    t = vals[0]._t
    dt = np.dtype(dtype) if dtype is not None else vals[0].dtype
    syms, shapes = [], []
    for a in args:
        if _is_v(a):
            a = nn.plain(a, f"{op} in torch's layout")
            syms.append(a.sym)
            shapes.append(a.shape)
        else:
            arr = np.asarray(_arr(a))
            arr = arr.astype(dt)
            syms.append(t.const(arr, op.lower()))
            shapes.append(arr.shape)
    try:
        shape = tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise ip.unsupported(f"{op} of shapes {shapes}, which do not broadcast") from None
    odt = np.dtype(out_dtype) if out_dtype is not None else dt
    if op == "Cast":
        from .._dtypes import code_of
        sym = t.emit(op, syms, shape, dtype=odt)
        sym.producer.attrs["dtype"] = code_of(odt)
    else:
        sym = t.emit(op, syms, shape, dtype=odt, **attrs)
    return nn.Value(t, sym, shape)


for _name, _fn in [("eq", lambda x, y: x == y), ("ne", lambda x, y: x != y), ("lt", lambda x, y: x < y),
                   ("le", lambda x, y: x <= y), ("gt", lambda x, y: x > y), ("ge", lambda x, y: x >= y)]:
    def _cmp(ip, a, b, _n=_name, _f=_fn):
        if _is_v(a) or _is_v(b):
            dt = (a if _is_v(a) else b).dtype
            if dt == np.bool_ and _n not in ("eq", "ne"):
                raise ip.unsupported(f"torch.{_n} on bool tensors")
            return _rt(ip, _CMP_OPS[_n], [a, b], out_dtype=np.bool_)
        r = _concrete_or(ip, _n, a, b, _f, None)
        return bool(r) if not isinstance(r, np.ndarray) else r
    _OPS[f"torch.{_name}"] = _cmp


def _logic(name):
    def h(ip, a, b):
        if _is_v(a) or _is_v(b):
            for v in (a, b):
                dt = v.dtype if _is_v(v) else np.asarray(_arr(v)).dtype
                if np.dtype(dt) != np.bool_:
                    raise ip.unsupported(f"torch.__{name}__ on a {np.dtype(dt)} tensor (bitwise ops on integers)")
            return _rt(ip, _LOGIC_OPS[name], [a, b], dtype=np.bool_)
        fn = {"and": lambda x, y: x & y, "or": lambda x, y: x | y, "xor": lambda x, y: x ^ y}[name]
        return _concrete_or(ip, name, a, b, fn, None)
    return h


for _name in _LOGIC_OPS:
    _OPS[f"torch.__{_name}__"] = _OPS[f"torch.__i{_name}__"] = _OPS[f"torch.logical_{_name}"] = _logic(_name)
    _OPS[f"torch.bitwise_{_name}"] = _logic(_name)


@_op("torch.logical_not", "torch.bitwise_not")
def _logical_not(ip, a):
    if _is_v(a):
        if a.dtype != np.bool_:
            raise ip.unsupported(f"torch.logical_not / bitwise_not on a {a.dtype} tensor")
        return _rt(ip, "LogicalNot", [a])
    arr = np.asarray(_arr(a))
    return ~arr if arr.dtype == np.bool_ else np.logical_not(arr)


def _where_vals(ip, cond, x, y):
    if not (_is_v(cond) or _is_v(x) or _is_v(y)):
        return np.where(np.asarray(_arr(cond)).astype(bool), _arr(x), _arr(y))
    if _is_v(cond) and cond.dtype != np.bool_:
        raise ip.unsupported(f"torch.where with a {cond.dtype} condition")
    dt = next((v.dtype for v in (x, y) if _is_v(v)), None)
    if dt is None:
        dt = np.result_type(np.asarray(_arr(x)), np.asarray(_arr(y)))
        dt = np.float32 if dt.kind == "f" else dt
    for v in (x, y):
        if _is_v(v) and v.dtype != dt:
            raise ip.unsupported(f"torch.where of {x.dtype} and {y.dtype} tensors")
    c = cond if _is_v(cond) else np.asarray(_arr(cond)).astype(bool)
    args = [c, x, y]
    vals = [a for a in args if _is_v(a)]
    t = vals[0]._t
    syms, shapes = [], []
    for i, a in enumerate(args):
        if _is_v(a):
            a = nn.plain(a, "Where in torch's layout")
            syms.append(a.sym)
            shapes.append(a.shape)
        else:
            arr = np.asarray(_arr(a)).astype(np.bool_ if i == 0 else dt)
            syms.append(t.const(arr, "where"))
            shapes.append(arr.shape)
    shape = tuple(int(d) for d in np.broadcast_shapes(*shapes))
    return nn.Value(t, t.emit("Where", syms, shape, dtype=dt), shape)


@_op("torch.where")
def _where(ip, cond, x=None, y=None):
    if x is None or y is None:
        raise ip.unsupported("torch.where(cond) (the indices of the true elements: a data-dependent shape)")
    return _where_vals(ip, cond, x, y)


@_op("torch.masked_fill", "torch.masked_fill_")
def _masked_fill(ip, x, mask, value):
    if _is_v(value):
        raise ip.unsupported("masked_fill with a tensor value")
    v = float(_arr(value)) if not isinstance(value, bool) else value
    if _is_v(x):
        v = np.asarray(v).astype(x.dtype)
    return _where_vals(ip, mask, v, x)


@_op("torch.index")
def _index(ip, x, indices):
    """x[i0, i1, ...] with integer index tensors (advanced indexing): constant indices on a run-time tensor
    become one Gather on the flattened leading dimensions."""
    idx = list(indices)
    if isinstance(x, np.ndarray):
        if any(_is_v(i) for i in idx):
            raise ip.unsupported("indexing a constant with run-time indices")
        return x[tuple(slice(None) if i is None else np.asarray(_arr(i)) for i in idx)]
    v = _need_v(ip, x, "index")
    if not idx or len(idx) > v.ndim or any(i is None or _is_v(i) for i in idx):
        raise ip.unsupported("indexing with run-time or omitted (None) index tensors")
    arrs = [np.asarray(_arr(i)) for i in idx]
    if any(a.dtype == np.bool_ or a.dtype.kind not in "iu" for a in arrs):
        raise ip.unsupported("indexing with boolean or float index tensors")
    lead = v.shape[:len(arrs)]
    try:
        b = np.broadcast_arrays(*[a.astype(np.int64) for a in arrs])
    except ValueError:
        raise ip.unsupported("index tensors whose shapes do not broadcast") from None
    for a, n in zip(b, lead):
        if a.size and (a.min() < -n or a.max() >= n):
            raise ip.unsupported(f"an index out of range for a dimension of size {n}")
    flat = np.ravel_multi_index(tuple(np.where(a < 0, a + n, a) for a, n in zip(b, lead)), lead) if b[0].size \
        else np.zeros(b[0].shape, np.int64)
    rest = v.shape[len(arrs):]
    t = v._t
    pv = nn.plain(v, "indexing in torch's layout")
    src = pv.sym
    n_lead = int(np.prod(lead))
    if len(lead) != 1:
        src = t.emit("Reshape", [src], (n_lead,) + rest, dtype=v.dtype, shape=[n_lead, *rest])
    shape = tuple(flat.shape) + rest
    out = t.emit("Gather", [src, t.const(flat.astype(np.int32), "index")], shape, dtype=v.dtype, axis=0)
    return nn.Value(t, out, shape)


@_op("torch.abs")
def _abs(ip, a):
    if _is_v(a):
        return nn.maximum(a, -a)
    return abs(a)


@_op("torch.sqrt")
def _sqrt(ip, a):
    return a.sqrt() if _is_v(a) else math.sqrt(a)


@_op("torch.rsqrt")
def _rsqrt(ip, a):
    return nn._unary(_need_v(ip, a, "rsqrt"), "Rsqrt")


@_op("torch.exp")
def _exp(ip, a):
    return a.exp() if _is_v(a) else math.exp(a)


@_op("torch.log")
def _log(ip, a):
    return nn._unary(a, "Log") if _is_v(a) else math.log(a)


@_op("torch.maximum", "torch.max_other")
def _maximum(ip, a, b):
    return nn.maximum(_arr(a), _arr(b))


@_op("torch.minimum")
def _minimum(ip, a, b):
    return nn.minimum(_arr(a), _arr(b))


@_op("torch.clamp", "torch.clamp_", "torch.clip")
def _clamp(ip, x, min=None, max=None):
    return nn.clamp(_need_v(ip, x, "clamp"), min, max)


@_op("torch.hardtanh", "torch.hardtanh_")
def _hardtanh(ip, x, min_val=-1.0, max_val=1.0):
    return nn.clamp(_need_v(ip, x, "hardtanh"), min_val, max_val)


# activations --------------------------------------------------------------------------------------

def _unary_op(op):
    def h(ip, x, *rest, **kw):
        v = _need_v(ip, x, op)
        if v.sym.quant is not None:
            if op != "Relu":
                raise ip.unsupported(f"{op} on a quantized tensor")
            (s,), (z,), _ = v.sym.quant
            return nn.quantize(nn.functional.relu(nn.dequantize(v)), s, z, v.dtype.name)
        return nn._unary(v, op)
    return h


for _n in ("relu", "relu_"):
    _OPS[f"torch.{_n}"] = _unary_op("Relu")
for _n in ("sigmoid", "sigmoid_"):
    _OPS[f"torch.{_n}"] = _unary_op("Logistic")
for _n in ("tanh", "tanh_"):
    _OPS[f"torch.{_n}"] = _unary_op("Tanh")
_OPS["torch.hardswish"] = _OPS["torch.hardswish_"] = _unary_op("HardSwish")
_OPS["torch.relu6"] = _unary_op("Relu6")


@_op("torch.gelu")
def _gelu(ip, x, approximate="none"):
    return nn.functional.gelu(_need_v(ip, x, "gelu"), approximate)


@_op("torch.silu", "torch.silu_")
def _silu(ip, x):
    return nn.functional.silu(_need_v(ip, x, "silu"))


@_op("torch.leaky_relu", "torch.leaky_relu_")
def _leaky(ip, x, negative_slope=0.01):
    return nn.functional.leaky_relu(_need_v(ip, x, "leaky_relu"), negative_slope)


@_op("torch.prelu")
def _prelu(ip, x, weight):
    m = nn.PReLU(int(np.asarray(weight).size))
    m.weight = nn.Parameter(np.asarray(weight))
    return m.forward(_need_v(ip, x, "prelu"))


@_op("torch.softmax", "torch.special_softmax")
def _softmax(ip, x, dim, dtype=None):
    return nn.functional.softmax(_need_v(ip, x, "softmax"), dim)


@_op("torch.log_softmax")
def _log_softmax(ip, x, dim, dtype=None):
    return nn.functional.log_softmax(_need_v(ip, x, "log_softmax"), dim)


@_op("torch.dropout", "torch.dropout_", "torch.feature_dropout", "torch.alpha_dropout", "torch.feature_alpha_dropout")
def _dropout(ip, x, p=0.5, train=False):
    return x  # inference: identity (the archive's training flags are ignored)


@_op("torch.contiguous", "torch.detach", "torch.clone", "torch.detach_")
def _identity(ip, x, *a, **k):
    return x


# shapes ---------------------------------------------------------------------------------------------

@_op("torch.size")
def _size(ip, x, dim=None):
    if not hasattr(x, "shape"):
        raise ip.unsupported(f"size() of a {type(x).__name__}")
    return list(x.shape) if dim is None else int(x.shape[dim])


@_op("torch.dim")
def _dim(ip, x):
    return len(x.shape)


@_op("torch.numel")
def _numel(ip, x):
    return int(np.prod(x.shape))


@_op("torch.view", "torch.reshape")
def _view(ip, x, shape):
    if isinstance(x, np.ndarray):
        return x.reshape(shape)
    return nn.reshape(_need_v(ip, x, "view"), *shape)


@_op("torch.expand")
def _expand(ip, x, size, implicit=False):
    if isinstance(x, np.ndarray):
        lead = len(size) - x.ndim
        shape = [s if s != -1 else x.shape[i - lead] for i, s in enumerate(size)]
        _bounded(ip, range(int(np.prod(shape))))
        return np.broadcast_to(x, shape).copy()
    v = _need_v(ip, x, "expand")
    if tuple(d if s == -1 else s for s, d in zip(size[-v.ndim:], v.shape)) == v.shape and len(size) == v.ndim:
        return v
    lead = len(size) - v.ndim
    if lead < 0:
        raise ip.unsupported(f"expand of a {v.ndim}-d tensor to {len(size)} dimensions")
    shape = [int(s) if s != -1 else (v.shape[i - lead] if i >= lead else -1) for i, s in enumerate(size)]
    if any(d < 0 for d in shape) or any(d != 1 and d != shape[i + lead] for i, d in enumerate(v.shape)):
        raise ip.unsupported(f"expand of {v.shape} to {list(size)}")
    return _rt(ip, "Expand", [v], shape=shape)


@_op("torch.gather")
def _gather(ip, x, dim, index, sparse_grad=False):
    if isinstance(x, np.ndarray) and isinstance(index, np.ndarray):
        try:
            return np.take_along_axis(x, index.astype(np.int64), dim)
        except (IndexError, ValueError) as e:
            raise ip.unsupported(f"gather of constants fails: {e}") from None
    raise ip.unsupported("torch.gather on run-time tensors")


@_op("torch.unflatten")
def _unflatten(ip, x, dim, sizes):
    v = _need_v(ip, x, "unflatten")
    d = dim % v.ndim
    return nn.reshape(v, *(v.shape[:d] + tuple(sizes) + v.shape[d + 1:]))


@_op("torch.select")
def _select(ip, x, dim, index):
    if isinstance(x, (list, tuple)):
        return x[index]
    if isinstance(x, np.ndarray):
        return np.take(x, index, axis=dim)
    v = _need_v(ip, x, "select")
    d = dim % v.ndim
    return nn.squeeze_dim(nn.narrow(v, d, index, 1), d)


@_op("torch.slice")
def _slice(ip, x, dim=0, start=None, end=None, step=1):
    if isinstance(x, (list, tuple)):
        return x[start:end:step]
    if isinstance(x, np.ndarray):
        idx = [slice(None)] * x.ndim
        idx[dim] = slice(start, end, step)
        return x[tuple(idx)]
    v = _need_v(ip, x, "slice")
    d = dim % v.ndim
    n = v.shape[d]
    lo, hi, st = slice(start, end, step).indices(n)
    if st != 1:
        raise ip.unsupported(f"slicing with step {st}")
    if lo == 0 and hi >= n:
        return v
    return nn.narrow(v, d, lo, max(hi - lo, 0))


@_op("torch.chunk")
def _chunk(ip, x, chunks, dim=0):
    v = _need_v(ip, x, "chunk")
    d = dim % v.ndim
    size = -(-v.shape[d] // chunks)
    return [nn.narrow(v, d, i, min(size, v.shape[d] - i)) for i in range(0, v.shape[d], size)]


@_op("torch.flatten")
def _flatten(ip, x, start_dim=0, end_dim=-1):
    return nn.flatten(_need_v(ip, x, "flatten"), start_dim, end_dim)


@_op("torch.permute")
def _permute(ip, x, dims):
    return nn.permute(_need_v(ip, x, "permute"), *dims)


@_op("torch.transpose")
def _transpose(ip, x, d0, d1):
    if isinstance(x, np.ndarray):
        return np.swapaxes(x, d0, d1)
    return _need_v(ip, x, "transpose").transpose(d0, d1)


@_op("torch.t")
def _t(ip, x):
    if isinstance(x, np.ndarray):
        return x.T
    return _need_v(ip, x, "t").transpose(0, 1) if x.ndim == 2 else x


@_op("torch.unsqueeze")
def _unsqueeze(ip, x, dim):
    if isinstance(x, np.ndarray):
        return np.expand_dims(x, dim)
    return _need_v(ip, x, "unsqueeze").unsqueeze(dim)


@_op("torch.squeeze")
def _squeeze(ip, x, dim=None):
    v = _need_v(ip, x, "squeeze")
    if isinstance(dim, (list, tuple)):
        for d in sorted((d % v.ndim for d in dim), reverse=True):
            v = v.squeeze(d)
        return v
    return v.squeeze(dim)


@_op("torch.cat", "torch.concat")
def _cat(ip, tensors, dim=0):
    if not all(_is_v(t) for t in tensors):
        raise ip.unsupported("torch.cat of constants and tensors")
    return nn.cat(list(tensors), dim)


@_op("torch.mean")
def _mean(ip, x, dim=None, keepdim=False, dtype=None):
    return nn.mean(_need_v(ip, x, "mean"), dim, keepdim)


@_op("torch.sum")
def _sum(ip, x, dim=None, keepdim=False, dtype=None):
    if isinstance(x, list):
        return sum(x)
    return nn.reduce_sum(_need_v(ip, x, "sum"), dim, keepdim)


@_op("torch.to", "torch.type_as", "torch.float")
def _to(ip, x, *a, **k):
    # torch.to(x, dtype) / (x, device, dtype, ...) / (x, other): a no-op for float32 tensors; casts otherwise
    # the dtype is the dtype= keyword, else the first integer argument (torch.to(x, 6) / (x, device, 6, ...))
    cand = [k["dtype"]] if "dtype" in k else [v for v in a if isinstance(v, int) and not isinstance(v, bool)][:1]
    dtypes = [v for v in cand if isinstance(v, int) and v in _SCALAR_TYPES]
    if isinstance(x, np.ndarray):
        return x.astype(_SCALAR_TYPES[dtypes[0]]) if dtypes and _SCALAR_TYPES[dtypes[0]] in (
            "float32", "float64", "int64", "int32") else x
    if _is_v(x):
        want = _SCALAR_TYPES.get(dtypes[0]) if dtypes else None
        if want is None or want == x.dtype.name:
            return x
        if want not in ("float32", "int32", "int64", "int8", "uint8", "bool") or \
                x.dtype.name not in ("float32", "int32", "int64", "int8", "uint8", "bool"):
            raise ip.unsupported(f"a cast of a {x.dtype.name} tensor to {want} (the runtime's Cast takes float32, "
                                 f"int32, int64, int8, uint8 and bool)")
        return _rt(ip, "Cast", [x], out_dtype=want)
    return x


# linear algebra -----------------------------------------------------------------------------------

def _linear_layer(weight, bias):
    w = weight
    out_f, in_f = w.shape
    m = nn.Linear(in_f, out_f, bias is not None)
    m.weight = nn.Parameter(w)
    if bias is not None:
        m.bias = nn.Parameter(np.asarray(bias, dtype=np.float32))
    return m


@_op("torch.linear")
def _linear(ip, x, weight, bias=None):
    x = _need_v(ip, x, "linear")
    if _is_v(weight):
        raise ip.unsupported("torch.linear with weights computed at run time")
    return _linear_layer(weight, bias).forward(x)


@_op("torch.addmm")
def _addmm(ip, bias, x, w, beta=1, alpha=1):
    if beta != 1 or alpha != 1:
        raise ip.unsupported("torch.addmm with beta/alpha")
    return _linear_layer(np.ascontiguousarray(np.asarray(_arr(w)).T), bias).forward(_need_v(ip, x, "addmm"))


@_op("torch.matmul", "torch.bmm", "torch.mm")
def _matmul(ip, a, b):
    return nn.matmul(_need_v(ip, a, "matmul"), _arr(b))


@_op("ops.quantized.linear_dynamic")
def _linear_dynamic(ip, x, packed, reduce_range=False):
    w, b = _packed_linear(ip, packed)
    return _linear_layer(w, b).forward(_need_v(ip, x, "linear_dynamic"))


@_op("ops.quantized.linear_dynamic_fp16")
def _linear_dynamic_fp16(ip, x, packed):
    w, b = _packed_linear(ip, packed)
    w = w.dequantize() if isinstance(w, QuantizedTensor) else np.asarray(w, np.float32)
    return _linear_layer(w.astype(np.float16).astype(np.float32), b).forward(_need_v(ip, x, "linear_dynamic_fp16"))


def _is_q(x) -> bool:
    return _is_v(x) and x.sym.quant is not None


@_op("torch.quantize_per_tensor")
def _quantize_per_tensor(ip, x, scale, zero_point, dtype):
    name = _SCALAR_TYPES.get(dtype)
    if name not in ("qint8", "quint8"):
        raise ip.unsupported(f"quantize_per_tensor to dtype code {dtype}")
    if _is_v(scale) or _is_v(zero_point):
        raise ip.unsupported("quantize_per_tensor with run-time scale / zero point")
    return nn.quantize(_need_v(ip, x, "quantize_per_tensor"), float(np.asarray(scale).reshape(-1)[0]),
                       int(np.asarray(zero_point).reshape(-1)[0]), name[1:])


@_op("torch.dequantize")
def _dequantize(ip, x):
    if isinstance(x, QuantizedTensor):
        return x.dequantize()
    return nn.dequantize(_need_v(ip, x, "dequantize"))


class _ConvPacked:
    """ops.quantized.conv2d_prepack's result: the weights and geometry of a static quantized convolution."""
    __slots__ = ("w", "b", "stride", "padding", "dilation", "groups")

    def __init__(self, w, b, stride, padding, dilation, groups):
        self.w, self.b, self.stride, self.padding, self.dilation, self.groups = w, b, stride, padding, dilation, groups


@_op("ops.quantized.conv2d_prepack", "ops.quantized.conv1d_prepack")
def _conv_prepack(ip, w, b, stride, padding, dilation, groups):
    return _ConvPacked(w, b, list(stride), list(padding), list(dilation), int(groups))


@_op("ops.quantized.linear_prepack")
def _linear_prepack(ip, w, b=None):
    o = ScriptObject("__torch__.torch.classes.quantized.LinearPackedParamsBase")
    o.state = (w, b)
    return o


def _requantize(ip, y, scale, zero_point, relu=False):
    if relu:
        y = nn.functional.relu(y)
    return nn.quantize(y, float(scale), int(zero_point), "uint8")


@_op("ops.quantized.conv2d", "ops.quantized.conv2d_relu", "ops.quantized.conv1d", "ops.quantized.conv1d_relu")
def _qconv(ip, x, packed, scale, zero_point):
    if not isinstance(packed, _ConvPacked):
        raise ip.unsupported(f"quantized conv with packed parameters of an unknown form ({type(packed).__name__})")
    y = _conv(ip, nn.dequantize(_need_v(ip, x, "quantized.conv2d")), packed.w, packed.b, packed.stride,
              packed.padding, packed.dilation, packed.groups)
    return _requantize(ip, y, scale, zero_point, relu=ip.current_op.endswith("_relu"))


@_op("ops.quantized.linear", "ops.quantized.linear_relu")
def _qlinear(ip, x, packed, scale, zero_point):
    w, b = _packed_linear(ip, packed)
    w = w.dequantize() if isinstance(w, QuantizedTensor) else w
    y = _linear_layer(np.asarray(w, np.float32), b).forward(nn.dequantize(_need_v(ip, x, "quantized.linear")))
    return _requantize(ip, y, scale, zero_point, relu=ip.current_op.endswith("_relu"))


@_op("ops.quantized.linear_unpack")
def _linear_unpack(ip, packed):
    return _packed_linear(ip, packed)


def _packed_linear(ip, packed):
    if not isinstance(packed, ScriptObject) or not isinstance(packed.state, tuple) or len(packed.state) < 2:
        raise ip.unsupported(f"packed linear parameters of an unknown form ({packed!r:.60})")
    w, b = packed.state[0], packed.state[1]
    if not isinstance(w, (QuantizedTensor, np.ndarray)) or (b is not None and not isinstance(b, np.ndarray)):
        raise ip.unsupported(f"packed linear parameters of an unknown form ({type(w).__name__}, {type(b).__name__})")
    return w, b


# convolution, normalization, pooling ------------------------------------------------------------------

def _conv(ip, x, weight, bias, stride, padding, dilation, groups, transposed=False, output_padding=(0, 0)):
    x = _need_v(ip, x, "convolution")
    w = np.asarray(_arr(weight), dtype=np.float32)
    if w.ndim == 3:  # Conv1d as a Conv2d of height 1
        v = nn.reshape(x, x.shape[0], x.shape[1], 1, x.shape[2])
        one = lambda s: [1] + list(s if isinstance(s, (list, tuple)) else [s])[:1]  # noqa: E731
        pad = padding if isinstance(padding, str) else [0] + list(padding)[:1]
        y = _conv(ip, v, w[:, :, None, :], bias, one(stride), pad, one(dilation), groups, transposed,
                  one(output_padding))
        return nn.reshape(y, y.shape[0], y.shape[1], y.shape[3])
    if w.ndim != 4:
        raise ip.unsupported(f"a convolution with {w.ndim - 2} spatial dimensions (1-D and 2-D are supported)")
    if transposed:
        cin, cout_g = w.shape[0], w.shape[1]
        m = nn.ConvTranspose2d(cin, cout_g * groups, tuple(w.shape[2:]), tuple(stride), tuple(padding),
                               tuple(output_padding), groups, bias is not None, tuple(dilation))
    else:
        cout, cin_g = w.shape[0], w.shape[1]
        pad = padding if isinstance(padding, str) else tuple(padding)
        m = nn.Conv2d(cin_g * groups, cout, tuple(w.shape[2:]), tuple(stride), pad, tuple(dilation), groups,
                      bias is not None)
    m.weight = nn.Parameter(w)
    if bias is not None:
        m.bias = nn.Parameter(np.asarray(bias, np.float32))
    return m.forward(x)


@_op("torch.conv2d", "torch.conv1d")
def _conv2d(ip, x, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    return _conv(ip, x, weight, bias, stride, padding, dilation, groups)


@_op("torch._convolution", "torch.convolution")
def _convolution(ip, x, weight, bias, stride, padding, dilation, transposed, output_padding, groups, *rest):
    return _conv(ip, x, weight, bias, stride, padding, dilation, groups, transposed, output_padding)


@_op("torch.conv_transpose2d")
def _conv_t2d(ip, x, weight, bias=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), groups=1,
              dilation=(1, 1)):
    return _conv(ip, x, weight, bias, stride, padding, dilation, groups, True, output_padding)


@_op("torch.batch_norm")
def _batch_norm(ip, x, weight, bias, mean, var, training, momentum, eps, *rest):
    x = _need_v(ip, x, "batch_norm")
    c = x.shape[1]
    m = (nn.BatchNorm2d if x.ndim == 4 else nn.BatchNorm1d)(c, eps, momentum, weight is not None)
    if weight is not None:
        m.weight, m.bias = nn.Parameter(np.asarray(weight)), nn.Parameter(np.asarray(bias))
    if mean is None or var is None:
        raise ip.unsupported("batch_norm without running statistics (normalizes with batch statistics)")
    m.running_mean, m.running_var = nn.Parameter(np.asarray(mean)), nn.Parameter(np.asarray(var))
    return m.forward(x)


@_op("torch.layer_norm")
def _layer_norm(ip, x, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    m = nn.LayerNorm(list(normalized_shape), eps, weight is not None, bias is not None)
    if weight is not None:
        m.weight = nn.Parameter(np.asarray(weight))
    if bias is not None:
        m.bias = nn.Parameter(np.asarray(bias))
    return m.forward(_need_v(ip, x, "layer_norm"))


@_op("torch.embedding")
def _embedding(ip, weight, indices, padding_idx=-1, scale_grad_by_freq=False, sparse=False):
    w = np.asarray(_arr(weight), np.float32)
    if isinstance(indices, np.ndarray):  # constant indices (position ids, token types): a constant
        if indices.dtype.kind not in "iu" or (indices.size and (indices.min() < -w.shape[0]
                                                                or indices.max() >= w.shape[0])):
            raise ip.unsupported("embedding with constant indices out of range")
        return w[indices]
    m = nn.Embedding(w.shape[0], w.shape[1])
    m.weight = nn.Parameter(w)
    return m.forward(_need_v(ip, indices, "embedding"))


def _pair_list(v):
    return tuple(v) if isinstance(v, (list, tuple)) and len(v) else v


@_op("torch.max_pool2d")
def _max_pool2d(ip, x, kernel_size, stride=(), padding=(0, 0), dilation=(1, 1), ceil_mode=False):
    if tuple(dilation) not in ((1, 1), (1,)):
        raise ip.unsupported(f"max_pool2d with dilation {list(dilation)}")
    stride = _pair_list(stride) or None
    return nn.MaxPool2d(_pair_list(kernel_size), stride, _pair_list(padding), ceil_mode=ceil_mode).forward(
        _need_v(ip, x, "max_pool2d"))


@_op("torch.avg_pool2d")
def _avg_pool2d(ip, x, kernel_size, stride=(), padding=(0, 0), ceil_mode=False, count_include_pad=True,
                divisor_override=None):
    stride = _pair_list(stride) or None
    return nn.AvgPool2d(_pair_list(kernel_size), stride, _pair_list(padding), ceil_mode, count_include_pad,
                        divisor_override).forward(_need_v(ip, x, "avg_pool2d"))


@_op("torch.adaptive_avg_pool2d")
def _adaptive_avg(ip, x, output_size):
    return nn.AdaptiveAvgPool2d(_pair_list(output_size)).forward(_need_v(ip, x, "adaptive_avg_pool2d"))


@_op("torch.adaptive_max_pool2d")
def _adaptive_max(ip, x, output_size):
    return (nn.AdaptiveMaxPool2d(_pair_list(output_size)).forward(_need_v(ip, x, "adaptive_max_pool2d")), None)


# attention ----------------------------------------------------------------------------------------------

def _mha(ip, x, embed_dim, num_heads, qkv_w, qkv_b, proj_w, proj_b, mask=None):
    """Self-attention of nn.MultiheadAttention (batch first, x [B, S, E]): per-head softmax(q k^T / sqrt(d)) v."""
    if mask is not None:
        raise ip.unsupported("an attention mask in the fused encoder op (a float additive mask is supported only "
                             "through scaled_dot_product_attention)")
    b, s, e = x.shape
    h = int(num_heads)
    if e != embed_dim or e % h:
        raise ip.unsupported(f"attention of embed_dim {embed_dim} over {h} heads on input {x.shape}")
    d = e // h
    qkv_w, qkv_b = np.asarray(_arr(qkv_w), np.float32), np.asarray(qkv_b, np.float32)

    def heads(i):
        y = _linear_layer(qkv_w[i * e:(i + 1) * e], qkv_b[i * e:(i + 1) * e]).forward(x)
        return nn.permute(nn.reshape(y, b, s, h, d), 0, 2, 1, 3)
    q, k, v = heads(0), heads(1), heads(2)
    att = nn.functional.softmax(nn.matmul(q * (1.0 / math.sqrt(d)), k.transpose(-1, -2)), -1)
    o = nn.reshape(nn.permute(nn.matmul(att, v), 0, 2, 1, 3), b, s, e)
    return _linear_layer(np.asarray(_arr(proj_w), np.float32), proj_b).forward(o)


@_op("torch._transformer_encoder_layer_fwd")
def _encoder_layer(ip, src, embed_dim, num_heads, qkv_w, qkv_b, proj_w, proj_b, use_gelu, norm_first, eps,
                   n1_w, n1_b, n2_w, n2_b, f1_w, f1_b, f2_w, f2_b, mask=None, mask_type=None):
    x = _need_v(ip, src, "_transformer_encoder_layer_fwd")
    if x.ndim != 3:
        raise ip.unsupported(f"the fused encoder layer on a {x.ndim}-D input (expected [batch, seq, embed])")

    def norm(v, w, bb):
        return _layer_norm(ip, v, [embed_dim], w, bb, eps)

    def ff(v):
        y = _linear_layer(np.asarray(_arr(f1_w), np.float32), f1_b).forward(v)
        y = nn.functional.gelu(y) if use_gelu else nn.functional.relu(y)
        return _linear_layer(np.asarray(_arr(f2_w), np.float32), f2_b).forward(y)

    if norm_first:
        x = x + _mha(ip, norm(x, n1_w, n1_b), embed_dim, num_heads, qkv_w, qkv_b, proj_w, proj_b, mask)
        return x + ff(norm(x, n2_w, n2_b))
    x = norm(x + _mha(ip, x, embed_dim, num_heads, qkv_w, qkv_b, proj_w, proj_b, mask), n1_w, n1_b)
    return norm(x + ff(x), n2_w, n2_b)


@_op("torch.scaled_dot_product_attention")
def _sdpa(ip, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    if enable_gqa:
        raise ip.unsupported("scaled_dot_product_attention(enable_gqa=True)")
    m = _arr(attn_mask)
    if _is_v(m) and m.dtype == np.bool_:   # True takes part: an additive 0 / -inf mask, as torch does
        m = _where_vals(ip, m, np.float32(0.0), np.float32(-np.inf))
    elif isinstance(m, np.ndarray) and m.dtype == np.bool_:
        m = np.where(m, 0.0, -np.inf).astype(np.float32)
    return nn.scaled_dot_product_attention(q, k, v, m, dropout_p, is_causal, scale)


@_op("torch.constant_pad_nd", "torch.pad")
def _pad(ip, x, pad, mode="constant", value=None):
    return nn.pad(_need_v(ip, x, "pad"), pad, mode, 0.0 if value is None else value)


# ---------------------------------------------------------------------------------------------
# the importer
# ---------------------------------------------------------------------------------------------

SUPPORTED_OPS: Dict[str, str] = {
    "torch.linear / addmm / matmul": "FullyConnected (constant weights), MatMul (tensor @ tensor)",
    "ops.quantized.linear_dynamic": "FullyConnected with torch's int8 weights and scales (int8-dynamic)",
    "torch.conv1d / conv2d / _convolution": "Conv2D / DepthwiseConv2D / TransposeConv2D (weights OIHW -> OHWI)",
    "torch.batch_norm / layer_norm": "BatchNorm / LayerNorm",
    "torch.embedding": "Gather",
    "torch.relu / relu6 / hardtanh / clamp / sigmoid / tanh / gelu / silu / hardswish / leaky_relu / prelu":
        "the activation ops (clamp: Relu / Relu6 / Maximum + Minimum)",
    "torch.softmax / log_softmax": "Softmax / LogSoftmax",
    "torch.max_pool2d / avg_pool2d / adaptive_avg_pool2d / adaptive_max_pool2d": "MaxPool2D / AveragePool2D / Mean",
    "torch.add / sub / mul / div / pow(2) / sqrt / rsqrt / exp / log / maximum / minimum": "elementwise ops",
    "torch.view / reshape / flatten / unflatten / permute / transpose / unsqueeze / squeeze / cat / mean / sum":
        "Reshape / Transpose (only when needed) / Concat / Mean",
    "torch.slice / select / chunk (x[:, a:b], x[:, i], x.chunk(n))": "Slice (step 1), Reshape",
    "F.multi_head_attention_forward (nn.MultiheadAttention, unfused)": "interpreted from its TorchScript code: "
                                                                       "FullyConnected, Slice, MatMul, Softmax",
    "torch.pad / constant_pad_nd": "Pad",
    "torch.quantize_per_tensor / dequantize": "Quantize (round half to even, torch's scale and zero point) / "
                                              "Dequantize",
    "ops.quantized.conv2d / conv2d_relu / linear / linear_relu (torch.ao static)":
        "Dequantize, the float op on the dequantized weights, Quantize to the layer's output parameters",
    "torch._transformer_encoder_layer_fwd": "nn.TransformerEncoderLayer's fused path: attention and feed-forward "
                                            "as FullyConnected, MatMul, Softmax, LayerNorm",
    "torch.scaled_dot_product_attention": "MatMul, Softmax, MatMul (float additive masks; a bool mask becomes "
                                          "Where(mask, 0, -inf))",
    "torch.dropout": "removed (inference)",
    "torch.eq / ne / lt / le / gt / ge on tensors": "Equal / NotEqual / Less / LessEqual / Greater / GreaterEqual "
                                                   "(bool output)",
    "torch.__and__ / __or__ / __xor__ / logical_* / bitwise_* / bitwise_not on bool tensors":
        "LogicalAnd / LogicalOr / LogicalXor / LogicalNot",
    "torch.where(cond, x, y) / masked_fill": "Where",
    "torch.to (a dtype) / float": "Cast between float32, int32, int64, int8, uint8 and bool (float32 -> float32 "
                                  "removed)",
    "torch.expand": "Expand (removed when the shape does not change)",
    "torch.index (x[i, j] with constant integer index tensors)": "one Gather on the indexed dimensions "
                                                                 "flattened",
    "torch.arange / ones / zeros / full / new_ones / new_zeros / new_full": "constants (known sizes)",
}


def import_model(source, report, input_shape=None, input_dtype=None, name: Optional[str] = None,
                 method: str = "forward", **unknown):
    """tinyinfer.convert for TorchScript archives: returns the GraphBuilder of `method` (forward) traced at
    `input_shape` (torch layout; a list of shapes for several inputs)."""
    if unknown:
        raise InvalidArgumentError(f"TorchScript importer: unknown option(s) {sorted(unknown)}; known: input_shape, "
                                   f"input_dtype, name, method")
    arc = read_archive(source)
    root = arc.root
    report.importer = "torchscript"
    found = arc.find(root.qualname)
    if found is None or not isinstance(found[0], ast.ClassDef):
        raise _err(f"{arc.where}: no code for the saved module's class {root.qualname}")
    fdef = next((s for s in found[0].body if isinstance(s, ast.FunctionDef) and s.name == method), None)
    if fdef is None:
        raise InvalidArgumentError(f"{arc.where}: {root.qualname} has no method {method!r}")
    params = [a.arg for a in fdef.args.args[1:]]
    if input_shape is None:
        raise InvalidArgumentError(
            f"TorchScript importer: input_shape is required (the archive's {method}({', '.join(params)}) has no "
            f"static shapes), e.g. tinyinfer.convert(src, dst, input_shape=(1, 3, 32, 32))")
    shapes = [tuple(input_shape)] if all(isinstance(d, (int, np.integer)) for d in input_shape) \
        else [tuple(s) for s in input_shape]
    nargs = len(params) - len(fdef.args.defaults)
    if not nargs <= len(shapes) <= len(params):
        raise InvalidArgumentError(f"{method}({', '.join(params)}) takes {nargs}..{len(params)} tensors; "
                                   f"input_shape gives {len(shapes)}")
    for s in shapes:
        if not s or any(int(d) < 1 for d in s):
            raise ShapeError(f"input shape {s}: every dimension must be >= 1")
    dtypes = [input_dtype or "float32"] * len(shapes) if not isinstance(input_dtype, (list, tuple)) \
        else list(input_dtype)
    tracer = nn._Tracer(nn.Module())
    ins = [tracer.input(n, s, d) for n, s, d in zip(params, shapes, dtypes)]
    ip = Interpreter(arc, tracer)
    try:
        ip.restore(root)
        out = ip.run(fdef, found[1], found[2], [root] + ins, {})
    except RecursionError:
        raise ip.unsupported("expressions or calls nest too deeply") from None
    except MemoryError:
        raise ip.unsupported("the code asks for more memory than is available") from None
    keys = None
    if isinstance(out, dict):  # a trace with strict=False (Hugging Face ModelOutput): outputs named by key
        if not all(isinstance(k, str) for k in out):
            raise UnsupportedOpError(f"TorchScript: {method} returns a dict with non-string keys")
        keys, out = list(out), list(out.values())
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    for o in outs:
        if not isinstance(o, nn.Value):
            raise UnsupportedOpError(f"TorchScript: {method} returns a {type(o).__name__}, not a tensor computed "
                                     f"from the inputs")
    names = keys or (["output"] if len(outs) == 1 else [f"output_{i}" for i in range(len(outs))])
    report.ops_in.update(ip.ops_in)
    b = tracer.finish(outs, name or root.qualname.rsplit(".", 1)[-1], names, report)
    report.notes.insert(0, f"read a TorchScript archive ({root.qualname}, {len(arc._code_src)} code files), "
                           f"interpreted {method}() at input shape(s) {shapes}")
    if tracer.quantized:
        report.notes.append(f"int8-dynamic: {len(tracer.quantized)} quantized Linear layer(s) keep torch's int8 "
                            f"weights and scales")
    elif any(q.startswith("__torch__.torch.nn.modules.linear") for q in _qualnames(root)):
        report.notes.append("the archive holds float32 Linear weights (torch's quantize_dynamic on an already "
                            "scripted module returns it unchanged; quantize before scripting, or run "
                            "tinyinfer.quantize(dst, mode='int8-dynamic') on the result)")
    return b


def _qualnames(root: ScriptObject):
    seen, stack = set(), [root]
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        yield o.qualname
        if isinstance(o.state, dict):
            stack.extend(v for v in o.state.values() if isinstance(v, ScriptObject))
