"""The numpy references themselves: their self-tests run here, and every op
of the library (tinyinfer.OPS, the C library's op table) has a reference that
a test compares the op against, or a documented reason in NO_REFERENCE.

The check is driven by tinyinfer.OPS: an op added to the core fails
test_every_op_has_a_reference_a_test_uses until its reference is written in
reference.py (REFERENCE) or reference_int8.py (REFERENCE_INT8) and a test
compares the op against it."""

import glob
import os
import re

import pytest

import reference
import reference_int8
import tinyinfer

HERE = os.path.dirname(os.path.abspath(__file__))

# Ops without a numpy reference in these tests: op -> why not, naming the test
# ("test_file.py::test_name") that checks the op instead (for example a
# converter test against LiteRT or onnxruntime). Every op has a reference
# today, so the table is empty; keep entries rare and justified.
NO_REFERENCE = {
    # Ops whose result is not a function of their inputs alone (session state, subgraphs): the tests
    # compare whole runs against numpy written in them.
    "ReadVariable": "the variable's value from earlier runs: test_state.py::test_accumulator_persists_and_resets "
                    "(a numpy accumulator over runs)",
    "AssignVariable": "the value for the next run: test_state.py::test_accumulator_persists_and_resets and "
                      "test_state.py::test_reads_see_the_value_at_the_start_of_the_run",
    "If": "runs a subgraph: test_control_flow.py::test_if_runs_the_branch_the_condition_picks (numpy per branch)",
    "While": "runs subgraphs: test_control_flow.py::test_while_iterates_as_the_data_says (a numpy loop)",
}

TABLES = {"reference": reference.REFERENCE, "reference_int8": reference_int8.REFERENCE_INT8}


def _test_sources():
    return {os.path.basename(p): open(p).read() for p in sorted(glob.glob(os.path.join(HERE, "test_*.py")))}


def _users(module, function):
    """Test files that use `function` of the reference module `module`
    (imported as `import module as X`, used as `X.function`)."""
    out = []
    for name, text in _test_sources().items():
        for alias in re.findall(r"^import %s as (\w+)$" % module, text, re.M):
            if re.search(r"\b%s\.%s\b" % (alias, function.__name__), text):
                out.append(name)
    return out


def test_reference_self_test():
    reference.self_test()


def test_reference_tables_name_real_ops():
    ops = set(tinyinfer.OPS)
    for module, table in TABLES.items():
        assert set(table) <= ops, (module, sorted(set(table) - ops))
        assert all(callable(f) for f in table.values()), module
    assert set(NO_REFERENCE) <= ops, sorted(set(NO_REFERENCE) - ops)
    sources = _test_sources()
    for op, why in NO_REFERENCE.items():
        assert not any(op in table for table in TABLES.values()), f"{op} has a reference now: drop it from NO_REFERENCE"
        cited = re.findall(r"(test_\w+\.py)::(test_\w+)", why)
        assert cited, f"NO_REFERENCE[{op!r}] names no test that checks the op instead"
        for file, test in cited:
            assert re.search(r"^def %s\(" % test, sources.get(file, ""), re.M), f"{file}::{test} does not exist"


@pytest.mark.parametrize("op", tinyinfer.OPS)
def test_every_op_has_a_reference_a_test_uses(op):
    if op in NO_REFERENCE:
        return  # checked by test_reference_tables_name_real_ops
    refs = [(module, table[op]) for module, table in TABLES.items() if op in table]
    assert refs, (f"{op} has no numpy reference: write one in reference.py (REFERENCE) or reference_int8.py "
                  f"(REFERENCE_INT8) and compare the op against it in a test, or give the reason in NO_REFERENCE")
    used = {f"{module}.{fn.__name__}": _users(module, fn) for module, fn in refs}
    assert any(used.values()), f"no test compares {op} against its reference {sorted(used)}"
