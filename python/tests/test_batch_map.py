"""Model.map: streaming over arrays, files, folders and iterators in batches,
in order, into output files or arrays; bad items; bounded memory; the CLI."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import tinyinfer
from tinyinfer import batching
from batch_helpers import close, mlp, two_input_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYINFER_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def net():
    data, ref = mlp()
    with tinyinfer.load(data) as m:
        yield m, ref


def data(n, d=32, seed=3):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_array_in_order_with_a_ragged_last_batch(net):
    m, ref = net
    x = data(1000)
    stream = m.map(x, batch_size=64, memory_budget=None, progress=False)
    ys = list(stream)
    assert len(ys) == 1000 and stream.count == 1000
    close(np.stack(ys), ref(x))


def test_auto_batch_size_follows_the_plan(net):
    m, ref = net
    x = data(300)
    stream = m.map(x, memory_budget="4MB", progress=False, measure_ms=50)
    close(np.stack(list(stream)), ref(x))
    assert stream.plan is not None and stream.batch_size == min(stream.plan.batch_size, 300)  # never over the data
    assert stream.plan.bytes_needed <= 4 << 20
    # the staging batches are counted per item
    assert stream.plan.item_bytes == 2 * 32 * 4 + 10 * 4


def test_batch_size_over_the_budget_is_refused(net):
    m, _ = net
    with pytest.raises(tinyinfer.OutOfMemoryError, match="over the memory budget"):
        m.map(data(10), batch_size=100000, memory_budget="1MB", progress=False)


def test_iterator_of_items_and_a_generator_without_length(net):
    m, ref = net
    x = data(77)
    close(np.stack(list(m.map([row for row in x], batch_size=8, memory_budget=None, progress=False))), ref(x))
    gen = (row.astype(np.float64) for row in x)  # float64 items are cast to the model's float32
    close(np.stack(list(m.map(gen, batch_size=10, memory_budget=None, progress=False))), ref(x))


def test_reader_prepares_the_next_batch_while_the_consumer_holds_the_first(net):
    m, _ = net
    pulled, threads = [], set()

    def items():
        for i in range(40):
            pulled.append(i)
            threads.add(threading.current_thread().name)
            yield np.zeros(32, np.float32)

    stream = m.map(items(), batch_size=10, memory_budget=None, progress=False)
    next(stream)  # the first batch ran
    deadline = time.time() + 5
    while len(pulled) < 20 and time.time() < deadline:
        time.sleep(0.01)
    assert len(pulled) >= 20, "the reader thread did not fill the next batch ahead"
    assert threading.current_thread().name not in threads
    stream.close()


def test_npy_npz_and_folder(net, tmp_path):
    m, ref = net
    x = data(130)
    np.save(tmp_path / "x.npy", x)
    close(np.stack(list(m.map(tmp_path / "x.npy", batch_size=16, memory_budget=None, progress=False))), ref(x))
    np.savez_compressed(tmp_path / "x.npz", x=x)
    close(np.stack(list(m.map(str(tmp_path / "x.npz"), batch_size=16, memory_budget=None, progress=False))), ref(x))
    folder = tmp_path / "items"
    folder.mkdir()
    np.save(folder / "a.npy", x[:50])         # a stack of items
    np.save(folder / "b.npy", x[50])          # one item
    np.save(folder / "c.npy", x[51:130])
    close(np.stack(list(m.map(folder, batch_size=16, memory_budget=None, progress=False))), ref(x))


def test_two_inputs_from_npz_and_dicts(tmp_path):
    data_, ref = two_input_model()
    a, b = data(20, 8, 1), data(20, 8, 2)
    np.savez(tmp_path / "ab.npz", a=a, b=b)
    with tinyinfer.load(data_) as m:
        close(np.stack(list(m.map(str(tmp_path / "ab.npz"), batch_size=6, memory_budget=None,
                                  progress=False))), ref(a, b))
        items = [{"a": a[i], "b": b[i]} for i in range(20)]
        close(np.stack(list(m.map(items, batch_size=6, memory_budget=None, progress=False))), ref(a, b))
        close(np.stack(list(m.map({"a": a, "b": b}, batch_size=7, memory_budget=None, progress=False))), ref(a, b))


def test_out_npy_memmap_and_folder(tmp_path):
    data_, ref = mlp(two_outputs=True)
    x = data(90)
    y_ref, t_ref = ref(x)
    with tinyinfer.load(data_) as m:
        res = m.map(x, batch_size=16, memory_budget=None, progress=False, out=tmp_path / "outs")
        assert res.count == 90 and len(res.out) == 2
        close(np.load(res.out[0]), y_ref)
        close(np.load(res.out[1]), t_ref)
        ys = list(m.map(x, batch_size=16, memory_budget=None, progress=False))
        assert isinstance(ys[0], tuple) and len(ys[0]) == 2
        close(np.stack([y for y, _ in ys]), y_ref)
    data1, ref1 = mlp()
    with tinyinfer.load(data1) as m:
        mm = np.lib.format.open_memmap(tmp_path / "mm.npy", mode="w+", dtype=np.float32, shape=(90, 10))
        res = m.map(x, batch_size=32, memory_budget=None, progress=False, out=mm)
        assert res.out is mm
        del mm
        close(np.load(tmp_path / "mm.npy"), ref1(x))
        with pytest.raises(tinyinfer.InvalidArgumentError, match="has 5 rows for 90 items"):
            m.map(x, batch_size=32, progress=False, memory_budget=None, out=np.zeros((5, 10), np.float32))
        with pytest.raises(tinyinfer.InvalidArgumentError, match="give a folder"):
            with tinyinfer.load(data_) as two:
                two.map(x, batch_size=32, progress=False, memory_budget=None, out=str(tmp_path / "one.npy"))


def bad_items(x):
    items = [row for row in x]
    items[5] = np.zeros(31, np.float32)           # wrong shape
    items[17] = np.array(["a"] * 32)              # not castable to float32
    return items


def test_bad_items_skipped_rows_are_nan(net, tmp_path):
    m, ref = net
    x = data(40)
    res = m.map(bad_items(x), batch_size=8, memory_budget=None, progress=False, on_error="skip",
                out=tmp_path / "y.npy")
    assert [s.index for s in res.skipped] == [5, 17]
    assert "shape [31]" in res.skipped[0].reason and "float32" in res.skipped[1].reason
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (40, 10)
    good = [i for i in range(40) if i not in (5, 17)]
    close(y[good], ref(x[good]))
    assert np.isnan(y[[5, 17]]).all()
    stream = m.map(bad_items(x), batch_size=8, memory_budget=None, progress=False, on_error="skip")
    close(np.stack(list(stream)), ref(x[good]))
    assert [s.index for s in stream.skipped] == [5, 17]


def test_bad_item_fatal_keeps_what_was_written(net, tmp_path):
    m, ref = net
    x = data(40)
    with pytest.raises(tinyinfer.BadItemError) as e:
        m.map(bad_items(x), batch_size=4, memory_budget=None, progress=False, out=tmp_path / "y.npy")
    assert e.value.index == 5 and "5 items before it are written" in str(e.value)
    y = np.load(tmp_path / "y.npy")  # a valid .npy with the rows before the bad item
    assert y.shape == (5, 10)
    close(y, ref(x[:5]))


def test_bad_files_in_a_folder_are_named(net, tmp_path):
    m, ref = net
    x = data(12)
    folder = tmp_path / "items"
    folder.mkdir()
    np.save(folder / "0.npy", x[:6])
    (folder / "1.npy").write_bytes(b"not a numpy file")
    np.save(folder / "2.npy", np.zeros((2, 5), np.float32))
    np.save(folder / "3.npy", x[6:])
    stream = m.map(folder, batch_size=4, memory_budget=None, progress=False, on_error="skip")
    close(np.stack(list(stream)), ref(x))
    assert [(s.index, s.name) for s in stream.skipped] == [(6, "1.npy"), (7, "2.npy")]
    assert "unreadable" in stream.skipped[0].reason
    with pytest.raises(tinyinfer.BadItemError, match=r"item 6 \(1.npy\): unreadable"):
        list(m.map(folder, batch_size=4, memory_budget=None, progress=False))


def test_a_run_failing_on_its_data_skips_only_the_bad_items(tmp_path):
    from batch_helpers import gather_model
    data_, table = gather_model()
    idx = np.arange(20, dtype=np.int32).reshape(20, 1) % 16
    idx[7] = 99
    with tinyinfer.load(data_) as m:
        stream = m.map(idx, batch_size=8, memory_budget=None, progress=False, on_error="skip")
        ys = np.stack(list(stream))
        assert [s.index for s in stream.skipped] == [7] and "out of range" in stream.skipped[0].reason
        good = [i for i in range(20) if i != 7]
        np.testing.assert_array_equal(ys[:, 0], table[idx[good, 0]])
        with pytest.raises(tinyinfer.TinyInferRuntimeError, match="items 0..7"):
            list(m.map(idx, batch_size=8, memory_budget=None, progress=False))


def test_progress_bar_with_and_without_tqdm(net, capsys, monkeypatch):
    pytest.importorskip("tqdm")
    m, _ = net
    list(m.map(data(50), batch_size=8, memory_budget=None, progress=True))
    assert "item/s" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    assert len(list(m.map(data(50), batch_size=8, memory_budget=None, progress=True))) == 50
    assert "item/s" not in capsys.readouterr().err


BOUNDED = textwrap.dedent("""
    import sys, numpy as np, tinyinfer
    path, model, out, budget = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))
    def reset_peak():  # Linux: writing 5 to clear_refs resets the peak resident size (VmHWM) to the current one
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    m = tinyinfer.load(model)
    small = np.zeros((256, 784), np.float32)
    list(m.map(small, memory_budget=budget, progress=False, measure_ms=200))   # warm: imports, plan, threads
    figures = []
    for run in range(2):
        base = status("VmRSS")
        reset_peak()
        src = path if run == 0 else (np.load(path, mmap_mode="r") if "--load" not in sys.argv else np.load(path))
        res = m.map(src, memory_budget=budget, progress=False, out=out + str(run) + ".npy", measure_ms=200)
        figures += [base, status("VmHWM"), res.count]
        del src, res
    print(*figures)
""")


def test_memory_stays_within_the_budget_on_data_several_times_larger(tmp_path):
    data_, ref = mlp(d_in=784, hidden=256, d_out=10)
    model = tmp_path / "m.tinf"
    model.write_bytes(data_)
    budget = 24 << 20
    n = 48_000                      # 48000 x 784 float32 = 150 MB: six times the budget
    path = tmp_path / "big.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, 784))
    for i in range(0, n, 5000):
        mm[i:i + 5000] = np.random.default_rng(i).standard_normal((min(5000, n - i), 784)).astype(np.float32)
    mm.flush()
    del mm
    assert os.path.getsize(path) > 5 * budget
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
    out = str(tmp_path / "y")
    r = subprocess.run([sys.executable, "-c", BOUNDED, str(path), str(model), out, str(budget)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    base0, peak0, count0, base1, peak1, count1 = map(int, r.stdout.split())
    assert count0 == count1 == n
    # the budget plus a fixed overhead (the bound): read-ahead and
    # mapped pages not yet released can add a few MB on a loaded machine
    limit = budget + (16 << 20)
    assert peak0 - base0 <= limit, (base0, peak0)   # streamed from the .npy file
    assert peak1 - base1 <= limit, (base1, peak1)   # from a read-only np.memmap
    x = np.load(path, mmap_mode="r")
    for run in range(2):
        y = np.load(out + f"{run}.npy", mmap_mode="r")
        assert y.shape == (n, 10)
        for i in (0, 12345, n - 1):  # spot checks against the numpy reference
            close(y[i:i + 1], ref(x[i:i + 1]))
    # the measure can fail: the same map over the array loaded whole goes over
    r = subprocess.run([sys.executable, "-c", BOUNDED, str(path), str(model), out, str(budget), "--load"],
                       capture_output=True, text=True, env=env, timeout=300)
    base1, peak1 = map(int, r.stdout.split()[3:5])
    assert peak1 - base1 > limit


def cli(*args, env=None):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"), **(env or {}))
    return subprocess.run([sys.executable, "-m", "tinyinfer", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_cli_run_streams_a_folder_into_a_file(net, tmp_path):
    data_, ref = mlp()
    model = tmp_path / "m.tinf"
    model.write_bytes(data_)
    x = data(50)
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "a.npy", x[:20])
    np.save(folder / "b.npy", x[20:])
    env = {"TINYINFER_CACHE_DIR": str(tmp_path / "cache")}
    r = cli("run", str(model), "--input", str(folder), "--output", str(tmp_path / "y.npy"), "--memory-budget",
            "16MB", "--no-progress", env=env)
    assert r.returncode == 0, r.stderr
    assert "50 items" in r.stderr
    close(np.load(tmp_path / "y.npy"), ref(x))
    # a bad file: fatal (exit 1, named, what came before kept) or skipped
    np.save(folder / "aa.npy", np.zeros((3, 7), np.float32))
    r = cli("run", str(model), "--input", str(folder), "--output", str(tmp_path / "y.npy"), "--batch-size", "8",
            "--no-progress", env=env)
    assert r.returncode == 1 and "item 20 (aa.npy)" in r.stderr, r.stderr
    close(np.load(tmp_path / "y.npy"), ref(x[:20]))
    r = cli("run", str(model), "--input", str(folder), "--output", str(tmp_path / "y.npy"), "--on-error", "skip",
            "--no-progress", env=env)
    assert r.returncode == 0 and "skipped item 20 (aa.npy)" in r.stderr, r.stderr
    y = np.load(tmp_path / "y.npy")
    close(np.delete(y, 20, axis=0), ref(x))
    assert np.isnan(y[20]).all()
    # without --output/--memory-budget `run` runs once, as before
    np.save(tmp_path / "one.npy", x[:1])
    r = cli("run", str(model), "--input", str(tmp_path / "one.npy"))
    assert r.returncode == 0 and "float32 [1, 10]" in r.stdout


def test_memmap_pages_released_after_writing_keep_their_rows(net, tmp_path):
    m, ref = net
    x = data(20_000)  # 800 KB of outputs: many pages written, then dropped from memory
    mm = np.lib.format.open_memmap(tmp_path / "y.npy", mode="w+", dtype=np.float32, shape=(20_000, 10))
    np.save(tmp_path / "x.npy", x)
    xin = np.load(tmp_path / "x.npy", mmap_mode="r")
    m.map(xin, batch_size=256, memory_budget=None, progress=False, out=mm)
    close(np.asarray(mm), ref(x))
    del mm
    close(np.load(tmp_path / "y.npy"), ref(x))


def test_stopping_early_ends_the_reader(net, tmp_path):
    m, ref = net
    x = data(1000)
    np.save(tmp_path / "x.npy", x)
    with m.map(tmp_path / "x.npy", batch_size=10, memory_budget=None, progress=False) as stream:
        first = [next(stream) for _ in range(15)]
    close(np.stack(first), ref(x[:15]))
    assert not stream._producer.is_alive()
    assert all(f.closed for f in stream._source.files)
