"""The package mirrors include/tinyinfer.h in one place each, checked here by
parsing the header: tinyinfer.Status and the status -> exception table
(tinyinfer._errors), the other enums the package uses, and every ctypes
prototype of tinyinfer._lib (each under the C declaration it mirrors)."""

import ctypes
import importlib
import os
import re

import numpy as np
import pytest

import tinyinfer
from tinyinfer import _dtypes, _errors, _lib
from tinyinfer.model import LOAD_DENSE, LOAD_NO_GRAPH_PASSES, LOAD_SPARSE_ALWAYS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEADER_TEXT = open(os.path.join(ROOT, "include", "tinyinfer.h")).read()
HEADER_CODE = re.sub(r"/\*.*?\*/", "", HEADER_TEXT, flags=re.S)  # without comments
quantize_mod = importlib.import_module("tinyinfer.quantize")  # the module (tinyinfer.quantize is the function)
LIB_PY = os.path.join(ROOT, "python", "tinyinfer", "_lib.py")


def header_enum(name):
    """{member: value} of `typedef enum NAME { ... } NAME;` in the header."""
    m = re.search(r"typedef enum %s \{(.*?)\} %s;" % (name, name), HEADER_CODE, re.S)
    assert m, name
    members = dict((k, int(v)) for k, v in re.findall(r"(\w+)\s*=\s*(-?\d+)", m.group(1)))
    assert members, name
    return members


# -- statuses and exceptions -----------------------------------------------------

def test_status_enum_is_the_headers():
    want = {k[len("TINF_ERR_"):] if k.startswith("TINF_ERR_") else k[len("TINF_"):]: v
            for k, v in header_enum("tinf_status").items()}
    assert {s.name: s.value for s in tinyinfer.Status} == want


def test_one_exception_class_per_failing_status():
    failing = {s for s in tinyinfer.Status if s != tinyinfer.Status.OK}
    assert set(_errors.BY_STATUS) == failing
    for status, cls in _errors.BY_STATUS.items():
        assert issubclass(cls, tinyinfer.TinyInferError)
        assert cls.status == status                          # the class carries its status
        assert getattr(tinyinfer, cls.__name__) is cls       # and is public
        e = _errors.error_for(int(status), "msg")
        assert type(e) is cls and e.status == status and e.status is status and e.message == "msg"
        assert cls("m").status == status                     # raised by the package: the same status
        assert _lib.lib.tinf_status_string(status) != b"unknown status"
    assert len(set(_errors.BY_STATUS.values())) == len(failing)


def test_built_in_bases_and_unknown_statuses():
    S = tinyinfer.Status
    assert issubclass(tinyinfer.UnsupportedDtypeError, tinyinfer.UnsupportedOpError)
    assert issubclass(tinyinfer.VersionError, tinyinfer.ModelFormatError)
    assert issubclass(_errors.BY_STATUS[S.INVALID_ARGUMENT], ValueError)
    assert issubclass(_errors.BY_STATUS[S.IO], OSError)
    unknown = max(S) + 1
    e = _errors.error_for(unknown, "from a newer library")
    assert type(e) is tinyinfer.TinyInferError and e.status == unknown


def test_library_failures_carry_their_status(tmp_path):
    S = tinyinfer.Status
    with pytest.raises(tinyinfer.TinyInferIOError) as ei:
        tinyinfer.load(str(tmp_path / "missing.tinf"))
    assert ei.value.status is S.IO
    with pytest.raises(tinyinfer.ModelFormatError) as ei:
        tinyinfer.load(b"NOPE" + bytes(100))
    assert ei.value.status is S.BAD_FORMAT
    b = tinyinfer.GraphBuilder("t")
    x = b.input("x", (2, 3))
    b.output(b.op("Add", x, b.const("c", np.ones((4,), np.float32))))
    with pytest.raises(tinyinfer.ShapeError) as ei:
        b.to_bytes()
    assert ei.value.status is S.SHAPE
    h = _lib.BuilderHandle()
    _lib.lib.tinf_builder_create(ctypes.byref(h))
    try:
        idx = ctypes.c_int32()
        dims = (ctypes.c_int64 * 1)(2)
        bad_dtype = max(_dtypes.TO_NUMPY) + 50
        with pytest.raises(tinyinfer.UnsupportedDtypeError) as ei:
            _lib.lib.tinf_builder_add_tensor(h, b"t", bad_dtype, 1, dims, None, 0, ctypes.byref(idx))
        assert ei.value.status is S.UNSUPPORTED_DTYPE
    finally:
        _lib.lib.tinf_builder_free(h)
    m = tinyinfer.load(_tiny_model())
    m.close()
    with pytest.raises(tinyinfer.InvalidStateError) as ei:
        m.run(np.zeros((1, 2), np.float32))
    assert ei.value.status is S.INVALID_STATE


def _tiny_model():
    b = tinyinfer.GraphBuilder("tiny")
    b.output(b.op("Relu", b.input("x", (1, 2))))
    return b.to_bytes()


# -- the other enums the package mirrors -------------------------------------------

def test_dtype_codes_are_the_headers():
    want = {k[len("TINF_DTYPE_"):]: v for k, v in header_enum("tinf_dtype").items()}
    assert {name: getattr(_dtypes, name) for name in want} == want
    assert sorted(_dtypes.TO_NUMPY) == sorted(want.values())


def test_quant_modes_and_calibration_methods_are_the_headers():
    modes = header_enum("tinf_quant_mode")
    assert quantize_mod.MODES == {k[len("TINF_QUANT_"):].lower().replace("_", "-"): v for k, v in modes.items()}
    methods = header_enum("tinf_calib_method")
    assert quantize_mod.METHODS == {k[len("TINF_CALIB_"):].lower(): v for k, v in methods.items()}
    assert header_enum("tinf_load_flag") == {"TINF_LOAD_NO_GRAPH_PASSES": LOAD_NO_GRAPH_PASSES,
                                             "TINF_LOAD_DENSE": LOAD_DENSE, "TINF_LOAD_SPARSE_ALWAYS": LOAD_SPARSE_ALWAYS}


# -- ctypes prototypes -------------------------------------------------------------

HANDLES = {"tinf_model": _lib.ModelHandle, "tinf_session": _lib.SessionHandle, "tinf_options": _lib.OptionsHandle,
           "tinf_builder": _lib.BuilderHandle, "tinf_quantizer": _lib.QuantizerHandle,
           "tinf_pruner": _lib.PrunerHandle, "tinf_result_cache": _lib.ResultCacheHandle,
           "tinf_batcher": _lib.BatcherHandle}
SCALARS = {"int32_t": ctypes.c_int32, "uint32_t": ctypes.c_uint32, "int64_t": ctypes.c_int64,
           "uint64_t": ctypes.c_uint64, "size_t": ctypes.c_size_t, "float": ctypes.c_float,
           "double": ctypes.c_double, "tinf_status": ctypes.c_int32, "tinf_tensor_info": _lib.TensorInfo,
           "tinf_tensor_detail": _lib.TensorDetail, "tinf_plan_entry": _lib.PlanEntry,
           "tinf_result_cache_counts": _lib.ResultCacheStats, "tinf_batcher_counters": _lib.BatcherCounters}


def ctype_of(c_type):
    """The ctypes type a C parameter or return type maps to."""
    t = c_type.replace("const", "").replace(" ", "")
    stars = t.count("*")
    base = t.replace("*", "")
    if base in ("char", "void") and stars:
        out, stars = (ctypes.c_char_p if base == "char" else ctypes.c_void_p), stars - 1
    elif base in HANDLES:
        out, stars = HANDLES[base], stars - 1
    else:
        out = SCALARS[base]
    for _ in range(stars):
        out = ctypes.POINTER(out)
    return out


def header_functions():
    """{name: declaration on one line} of every function of the header."""
    decls = re.findall(r"^((?:const )?\w+ \*?\s*(tinf_\w+)\([^;]*\);)", HEADER_CODE, re.M)
    return {name: " ".join(d.split()) for d, name in decls}


def lib_py_declarations():
    """{name: the comment above its _fn line, joined to one line} from _lib.py."""
    lines = open(LIB_PY).read().split("\n")
    out = {}
    for i, line in enumerate(lines):
        m = re.match(r'_fn\("(tinf_\w+)"', line)
        if not m:
            continue
        assert m.group(1) not in out, f"{m.group(1)} is declared twice in _lib.py"
        j, comment = i - 1, []
        while j >= 0 and lines[j].startswith("#"):
            comment.insert(0, lines[j][1:].strip())
            j -= 1
        out[m.group(1)] = " ".join(comment).replace("( ", "(")
    return out


def test_every_function_is_declared_once_under_its_c_declaration():
    header, ours = header_functions(), lib_py_declarations()
    assert len(header) >= 70
    assert sorted(ours) == sorted(header)
    for name, decl in header.items():
        assert ours[name] == decl, f"_lib.py's comment above {name} is not the header's declaration"


def test_no_prototype_outside_lib_py():
    pkg = os.path.join(ROOT, "python", "tinyinfer")
    for dirpath, _, files in os.walk(pkg):
        for f in files:
            path = os.path.join(dirpath, f)
            if f.endswith(".py") and path != LIB_PY:
                text = open(path).read()
                assert not re.search(r"\b_fn\(|\.argtypes\s*=|\.restype\s*=", text), path


@pytest.mark.parametrize("name", sorted(header_functions()))
def test_ctypes_types_mirror_the_header(name):
    decl = header_functions()[name]
    ret = decl[:decl.index(name + "(")].strip()
    params = re.search(r"\((.*)\);$", decl).group(1)
    f = getattr(_lib.lib, name)
    want_args = [] if params == "void" else [ctype_of(re.sub(r"\w+$", "", p.strip())) for p in params.split(",")]
    assert f.argtypes is not None and list(f.argtypes) == want_args, name
    if ret == "void":
        assert f.restype is None
    else:
        assert f.restype is ctype_of(ret), name
    # exactly the tinf_status functions raise the exception of their status
    assert (getattr(f, "errcheck", None) is _lib._check) == (ret == "tinf_status"), name


def test_c_api_doc_names_each_status_and_its_exception():
    doc = open(os.path.join(ROOT, "docs", "c-api.md")).read()
    rows = re.findall(r"^\| `TINF_(?:ERR_)?(\w+)` \((\d+)\) \|[^|]*\| (?:`(\w+)`|\(none\)) \|$", doc, re.M)
    assert {name: int(v) for name, v, _ in rows} == {s.name: s.value for s in tinyinfer.Status}
    for name, _, cls in rows:
        assert (cls or None) == (None if name == "OK" else _errors.BY_STATUS[tinyinfer.Status[name]].__name__), name


def test_no_literal_status_numbers_in_the_package():
    """Exceptions take their status from their class: no `SomeError(msg, 3)` anywhere in the package."""
    import pathlib
    import re
    root = pathlib.Path(__file__).resolve().parents[1] / "tinyinfer"
    pattern = re.compile(r"Error\((?:[^()]|\([^()]*\))*?,\s*[0-9]+\)")
    found = []
    for path in root.rglob("*.py"):
        for m in pattern.finditer(path.read_text()):
            found.append(f"{path.relative_to(root)}: {m.group(0)[:80]}")
    assert not found, "literal statuses:\n" + "\n".join(found)
