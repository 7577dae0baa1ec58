"""tinyinfer.Monitor: the run log the library keeps (against times measured
around each call from Python), the sources read from fake /proc, powercap,
hwmon and power_supply trees (figures computed here from the values written
into them), the real ones where this machine has them, and that nothing is
logged or sampled with no monitor active."""

import ctypes
import os
import threading
import time

import numpy as np
import pytest

import tinyinfer
from tinyinfer import InvalidArgumentError, Monitor, Unavailable, _lib
from tinyinfer import model as model_mod
from tinyinfer import monitor as mon


def mlp_file(tmp_path, hidden=64, batch=1):
    rng = np.random.default_rng(0)
    b = tinyinfer.GraphBuilder("mlp")
    x = b.input("x", (batch, 32))
    w1 = rng.standard_normal((hidden, 32)).astype(np.float32)
    w2 = rng.standard_normal((10, hidden)).astype(np.float32)
    h = b.op("FullyConnected", x, b.const("w1", w1), b.const("b1", np.zeros(hidden, np.float32)), activation=1)
    y = b.op("FullyConnected", h, b.const("w2", w2), b.const("b2", np.zeros(10, np.float32)))
    b.output(b.op("Softmax", y))
    path = str(tmp_path / "mlp.tinf")
    b.save(path)
    return path, (w1.nbytes + w2.nbytes + 4 * (hidden + 10))


def no_fake_sources(tmp_path):
    """Roots with nothing in them: no RAPL, no battery."""
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    return dict(powercap_root=str(empty), hwmon_root=str(empty), power_supply_root=str(empty), gpu=False)


# ---- the run log ------------------------------------------------------------------------------------------------

def test_every_run_is_logged_and_each_time_is_within_the_call_around_it(tmp_path):
    path, _ = mlp_file(tmp_path)
    with tinyinfer.load(path) as m:
        s = m.session()
        x = np.ones((1, 32), np.float32)
        s.run(x)
        outer = []
        with Monitor(time_every_run=True, **no_fake_sources(tmp_path)) as mo:
            for _ in range(300):
                t0 = time.perf_counter_ns()
                s.run(x)
                outer.append(time.perf_counter_ns() - t0)
        r = mo.report
        assert r["runs"] == 300 and r["samples"] == 300 and r["timed_runs"] == 300
        logged = r.latencies_ns.astype(np.int64)
        assert logged.size == 300
        # The library's time of each run lies inside the Python call around it.
        assert np.all(logged > 0)
        assert np.all(logged <= np.array(outer))
        lat = r["latency_us"]
        assert lat["p50"] == pytest.approx(np.percentile(logged, 50) / 1e3)
        assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert r["throughput_per_s"] == pytest.approx(300 / r["wall_s"])
        s.close()


def big_fc_file(tmp_path):
    b = tinyinfer.GraphBuilder("big")
    w = np.random.default_rng(1).standard_normal((2048, 2048)).astype(np.float32)
    b.output(b.op("FullyConnected", b.input("x", (1, 2048)), b.const("w", w)))
    path = str(tmp_path / "big.tinf")
    b.save(path)
    return path


def test_default_sampling_times_long_runs_all_and_short_ones_one_in_16(tmp_path):
    small, _ = mlp_file(tmp_path)
    with tinyinfer.load(small) as m, tinyinfer.load(big_fc_file(tmp_path)) as big:
        x, xb = np.ones((1, 32), np.float32), np.ones((1, 2048), np.float32)
        m.run(x)
        big.run(xb)
        with Monitor(**no_fake_sources(tmp_path)) as short:
            for _ in range(320):
                m.run(x)
        with Monitor(**no_fake_sources(tmp_path)) as long:
            for _ in range(30):
                big.run(xb)         # 4M multiply-adds: well over 16 us a run
    assert short.report["runs"] == 320
    # One in 16 (20) unless the machine stretched some runs past 16 us.
    assert 20 <= short.report["timed_runs"] < 320
    assert long.report["runs"] == long.report["timed_runs"] == 30
    assert long.report["latency_us"]["min"] >= 16


def test_no_monitor_no_logging_and_no_sampler_thread(tmp_path):
    path, _ = mlp_file(tmp_path)
    with tinyinfer.load(path) as m:
        s = m.session()
        x = np.ones((1, 32), np.float32)
        with Monitor(**no_fake_sources(tmp_path)):
            s.run(x)
            log = mon._registry.logs[s._run_log_key]
            assert any(t.name == "tinyinfer-monitor" for t in threading.enumerate())
        assert log.count == 1
        for _ in range(5):
            s.run(x)
        assert log.count == 1, "the library still logs runs after the monitor stopped"
        assert model_mod._session_hook is None and not mon._registry.logs
        assert not any(t.name == "tinyinfer-monitor" for t in threading.enumerate())
        # A later monitor counts only its own runs.
        with Monitor(**no_fake_sources(tmp_path)) as mo:
            for _ in range(7):
                s.run(x)
        assert mo.report["runs"] == 7
        s.close()


def test_sessions_made_during_the_block_and_other_batch_sizes_are_counted(tmp_path):
    path, _ = mlp_file(tmp_path)
    with Monitor(**no_fake_sources(tmp_path)) as mo:
        with tinyinfer.load(path) as m:
            m.run(np.ones((1, 32), np.float32))
            m.run(np.ones((8, 32), np.float32))       # a session of its own for batch 8
            m.run(np.ones((8, 32), np.float32))
    r = mo.report
    assert r["runs"] == 3
    assert r["samples"] == 1 + 8 + 8


def test_nested_monitors_and_a_small_log(tmp_path):
    path, _ = mlp_file(tmp_path)
    with tinyinfer.load(path) as m:
        x = np.ones((1, 32), np.float32)
        with Monitor(log_capacity=10, time_every_run=True, **no_fake_sources(tmp_path)) as outer:
            for _ in range(5):
                m.run(x)
            with Monitor(**no_fake_sources(tmp_path)) as inner:
                for _ in range(20):
                    m.run(x)
            for _ in range(3):
                m.run(x)
    assert inner.report["runs"] == 20
    assert outer.report["runs"] == 28
    assert outer.report.latencies_ns.size == 10        # the last 10 runs are kept
    assert inner.report["memory"]["peak_method"].startswith("sampled")   # the outer one reset the mark


def test_monitor_arguments_are_checked():
    with pytest.raises(ValueError):
        Monitor(interval=0)
    with pytest.raises(ValueError):
        Monitor(log_capacity=0)
    with pytest.raises(ValueError):
        Monitor(watts_per_core=-1)
    m = Monitor(gpu=False)
    with pytest.raises(RuntimeError):
        m.stop()


def test_c_run_log_and_plan_entry_check_their_arguments(tmp_path):
    path, _ = mlp_file(tmp_path)
    with tinyinfer.load(path) as m:
        s = m.session()
        with pytest.raises(InvalidArgumentError):
            _lib.lib.tinf_session_set_run_log(s._handle, (ctypes.c_uint64 * 2)(), 0, 0)
        with pytest.raises(InvalidArgumentError):
            _lib.lib.tinf_session_set_run_log(None, None, 0, 0)
        e = _lib.PlanEntry()
        with pytest.raises(InvalidArgumentError):
            _lib.lib.tinf_session_plan_entry(s._handle, m.num_tensors, ctypes.byref(e))
        with pytest.raises(InvalidArgumentError):
            _lib.lib.tinf_session_plan_entry(s._handle, -1, ctypes.byref(e))
        with pytest.raises(InvalidArgumentError):
            _lib.lib.tinf_session_plan_entry(s._handle, 0, None)
        with pytest.raises(InvalidArgumentError):
            _lib.lib.tinf_model_memory(None, None, None, None, None)
        with pytest.raises(InvalidArgumentError):
            _lib.lib.tinf_session_set_run_log(s._handle, (ctypes.c_uint64 * 4)(), 2, 2)     # unknown flag
        # A log the C code writes directly: a ring of 3, every run timed.
        buf = (ctypes.c_uint64 * 5)()
        _lib.lib.tinf_session_set_run_log(s._handle, buf, 3, _lib.RUN_LOG_EVERY_RUN)
        for _ in range(5):
            _lib.lib.tinf_session_run(s._handle)
        _lib.lib.tinf_session_set_run_log(s._handle, None, 0, 0)
        _lib.lib.tinf_session_run(s._handle)
        assert buf[0] == 5 and buf[1] == 5 and all(buf[i] > 0 for i in (2, 3, 4))
        # Adaptive: after a short run (this model runs in about a microsecond) the next 15 are not timed.
        buf = (ctypes.c_uint64 * 5)()
        _lib.lib.tinf_session_set_run_log(s._handle, buf, 3, 0)
        for _ in range(5):
            _lib.lib.tinf_session_run(s._handle)
        _lib.lib.tinf_session_set_run_log(s._handle, None, 0, 0)
        assert buf[0] == 5 and 1 <= buf[1] <= 5 and buf[2] > 0
        s.close()


# ---- memory, CPU, faults ----------------------------------------------------------------------------------------

def test_library_memory_by_part(tmp_path):
    path, weight_bytes = mlp_file(tmp_path)
    with tinyinfer.load(path) as m:
        s = m.session()
        lib = mon.library_memory_of(m, [s])
        assert lib["files"] == os.path.getsize(path)
        assert lib["weights"] == weight_bytes
        assert lib["folded"] == 0
        assert lib["arena"] == s.arena_bytes > 0
        assert isinstance(lib["kernel_scratch"], Unavailable) and lib["kernel_scratch"].reason
        assert lib["packed"] > 0           # the float32 FullyConnected kernels repack their weights at load
        b = tinyinfer.GraphBuilder("add")
        b.output(b.op("Add", b.input("x", (1, 8)), b.const("c", np.ones((1, 8), np.float32))))
        with b.load() as m2:
            assert mon.library_memory_of(m2, [])["packed"] == 0      # nothing to repack
            assert mon.library_memory_of(m2, [])["weights"] == 32
        total = mon.library_memory()
        assert total["arena"] >= s.arena_bytes and total["files"] >= lib["files"]
        s.close()


def test_peak_rss_sees_a_short_allocation_and_faults_are_counted(tmp_path):
    n = 64 << 20
    with Monitor(**no_fake_sources(tmp_path)) as mo:
        rss0 = mo.proc.rss()
        a = np.ones(n, np.uint8)          # touched: resident
        del a
    r = mo.report
    assert r["memory"]["peak_method"] == "kernel high-water mark, reset at start"
    assert r["memory"]["peak_rss_bytes"] >= rss0 + 0.9 * n
    assert r["page_faults"]["minor"] > 0
    assert r["cpu"]["user_s"] + r["cpu"]["system_s"] > 0


def fake_proc(root, busy, total):
    (root / "self").mkdir(parents=True, exist_ok=True)
    (root / "self" / "statm").write_text("1000 250 100 10 0 200 0\n")
    (root / "self" / "status").write_text("Name:\tpython\nVmHWM:\t    4096 kB\nVmRSS:\t    1000 kB\n")
    lines = [f"cpu  {sum(busy)} 0 0 {sum(total) - sum(busy)} 0 0 0 0 0 0"]
    for i, (b, t) in enumerate(zip(busy, total)):
        # user nice system idle iowait irq softirq steal
        lines.append(f"cpu{i} {b - 10} 0 10 {t - b - 5} 5 0 0 0 0 0")
    (root / "stat").write_text("\n".join(lines) + "\nintr 0\n")


def test_per_core_cpu_from_a_fake_proc_stat(tmp_path):
    proc = tmp_path / "proc"
    fake_proc(proc, busy=[100, 200], total=[1000, 1000])
    with Monitor(proc_root=str(proc), **no_fake_sources(tmp_path)) as mo:
        # core 0: 150 more busy ticks of 200; core 1: 10 of 400
        fake_proc(proc, busy=[250, 210], total=[1200, 1400])
    r = mo.report
    assert r["cpu"]["per_core_percent"] == pytest.approx([75.0, 2.5])
    page = os.sysconf("SC_PAGE_SIZE")
    assert r["memory"]["rss_bytes"] == 250 * page
    assert r["memory"]["peak_method"].startswith("sampled")   # a fake tree has no clear_refs
    assert mon.ProcSource(str(proc)).hwm() == 4096 * 1024


def test_missing_proc_gives_reasons_not_numbers(tmp_path, monkeypatch):
    p = mon.ProcSource(str(tmp_path / "nothing"))
    monkeypatch.setitem(__import__("sys").modules, "psutil", None)   # no psutil fallback either
    assert isinstance(p.hwm(), Unavailable)
    assert isinstance(p.cpu_ticks(), Unavailable) and "stat" in p.cpu_ticks().reason
    assert isinstance(p.rss(), Unavailable)
    assert p.reset_hwm() is not None


# ---- energy -----------------------------------------------------------------------------------------------------

def rapl_zone(root, name, zone, uj, rng=262143328850):
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "name").write_text(zone + "\n")
    (d / "energy_uj").write_text(f"{uj}\n")
    (d / "max_energy_range_uj").write_text(f"{rng}\n")


def test_rapl_package_and_dram_from_a_fake_powercap_tree(tmp_path):
    pc = tmp_path / "powercap"
    rapl_zone(pc, "intel-rapl:0", "package-0", 1_000_000)
    rapl_zone(pc, "intel-rapl:0:0", "core", 500_000)          # inside the package: not added
    rapl_zone(pc, "intel-rapl:0:1", "dram", 2_000_000)
    rapl_zone(pc, "intel-rapl:1", "psys", 9_000_000)          # the whole platform: not added
    path, _ = mlp_file(tmp_path)
    roots = dict(powercap_root=str(pc), hwmon_root=str(tmp_path / "none"),
                 power_supply_root=str(tmp_path / "none"), gpu=False)
    with tinyinfer.load(path) as m:
        x = np.ones((1, 32), np.float32)
        with Monitor(**roots) as mo:
            for _ in range(50):
                m.run(x)
            rapl_zone(pc, "intel-rapl:0", "package-0", 4_500_000)
            rapl_zone(pc, "intel-rapl:0:1", "dram", 2_250_000)
            rapl_zone(pc, "intel-rapl:0:0", "core", 3_000_000)
            rapl_zone(pc, "intel-rapl:1", "psys", 19_000_000)
    e = mo.report["energy"]
    assert e["domains"] == pytest.approx({"package-0": 3.5, "dram-0": 0.25})
    assert e["joules"] == pytest.approx(3.75)
    assert e["j_per_inference"] == pytest.approx(3.75 / 50)
    assert e["watts"] == pytest.approx(3.75 / mo.report["wall_s"])
    assert "energy (RAPL): 3.750 J" in str(mo.report) and "package-0 3.500 J" in str(mo.report)


def test_rapl_counter_wrap(tmp_path):
    pc = tmp_path / "powercap"
    rapl_zone(pc, "intel-rapl:0", "package-0", 999_000, rng=1_000_000)
    src = mon.RaplSource(str(pc), str(tmp_path / "none"))
    assert src.problem is None
    src.start()
    rapl_zone(pc, "intel-rapl:0", "package-0", 500, rng=1_000_000)     # wrapped past 1_000_000
    src.sample()
    assert src.joules()["package-0"] == pytest.approx((1_000_000 - 999_000 + 1 + 500) * 1e-6)


def test_amd_energy_hwmon(tmp_path):
    h = tmp_path / "hwmon" / "hwmon3"
    h.mkdir(parents=True)
    (h / "name").write_text("amd_energy\n")
    (h / "energy1_label").write_text("Ecore000\n")
    (h / "energy1_input").write_text("100\n")
    (h / "energy17_label").write_text("Esocket0\n")
    (h / "energy17_input").write_text("7000000\n")
    other = tmp_path / "hwmon" / "hwmon0"
    other.mkdir()
    (other / "name").write_text("k10temp\n")
    src = mon.RaplSource(str(tmp_path / "no-powercap"), str(tmp_path / "hwmon"))
    assert src.problem is None and [d[0] for d in src.domains] == ["package-0"]
    src.start()
    (h / "energy17_input").write_text("9500000\n")
    (h / "energy1_input").write_text("900000\n")
    src.sample()
    assert src.joules() == pytest.approx({"package-0": 2.5})


def test_no_rapl_and_permission_denied_are_unavailable_with_the_reason(tmp_path, monkeypatch):
    src = mon.RaplSource(str(tmp_path / "a"), str(tmp_path / "b"))
    assert "no RAPL" in src.problem
    pc = tmp_path / "powercap"
    rapl_zone(pc, "intel-rapl:0", "package-0", 1)

    def denied(path):
        raise PermissionError(13, "Permission denied", path)
    monkeypatch.setattr(mon, "_read_int", denied)
    with Monitor(powercap_root=str(pc), hwmon_root=str(tmp_path / "b"), power_supply_root=str(tmp_path / "b"),
                 gpu=False) as mo:
        pass
    e = mo.report["energy"]
    assert isinstance(e, Unavailable) and "permission denied" in e.reason and "energy_uj" in e.reason
    assert mo.report.to_dict()["energy"] == {"unavailable": e.reason}


def test_energy_estimate_is_cpu_time_times_the_per_core_figure(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYINFER_WATTS_PER_CORE", "2.5")
    with Monitor(**no_fake_sources(tmp_path)) as mo:
        np.linalg.svd(np.random.default_rng(0).standard_normal((300, 300)))
    r = mo.report
    est = r["energy_estimate"]
    assert est["estimate"] is True and est["watts_per_core"] == 2.5
    assert est["joules"] == pytest.approx((r["cpu"]["user_s"] + r["cpu"]["system_s"]) * 2.5)
    assert est["j_per_inference"] is None            # no run in the block


# ---- battery ----------------------------------------------------------------------------------------------------

def battery(root, **files):
    d = root / "BAT0"
    d.mkdir(parents=True, exist_ok=True)
    for k, v in files.items():
        (d / k).write_text(f"{v}\n")


def test_battery_energy_and_power(tmp_path):
    ps = tmp_path / "power_supply"
    battery(ps, status="Discharging", energy_now=40_000_000, energy_full=50_000_000, power_now=8_000_000)
    path, _ = mlp_file(tmp_path)
    with tinyinfer.load(path) as m:
        x = np.ones((1, 32), np.float32)
        with Monitor(power_supply_root=str(ps), powercap_root=str(tmp_path / "n"), hwmon_root=str(tmp_path / "n"),
                     gpu=False, interval=0.01) as mo:
            for _ in range(100):
                m.run(x)
            time.sleep(0.05)
    r = mo.report
    b = r["battery"]
    wall = r["wall_s"]
    assert b["mwh"] == pytest.approx(8.0 * wall / 3.6)          # 8 W for `wall` seconds, in mWh
    assert b["mwh_per_1000"] == pytest.approx(8.0 * wall / 3.6 / 100 * 1000)
    assert b["hours_full"] == pytest.approx(50.0 / 8.0)         # 50 Wh at 8 W
    assert b["watts"] == pytest.approx(8.0)


def test_battery_from_charge_current_and_voltage(tmp_path):
    ps = tmp_path / "power_supply"
    # 2000 mAh of 4000 at 3.8 V, drawing 0.5 A: 1.9 W, full 15.2 Wh
    battery(ps, status="Discharging", charge_now=2_000_000, charge_full=4_000_000, current_now=-500_000,
            voltage_now=3_800_000)
    src = mon.BatterySource(str(ps))
    st = src.state()
    assert st["energy_wh"] == pytest.approx(7.6) and st["full_wh"] == pytest.approx(15.2)
    assert st["power_w"] == pytest.approx(1.9)


def test_battery_on_mains_or_absent_is_unavailable(tmp_path):
    ps = tmp_path / "power_supply"
    battery(ps, status="Charging", energy_now=40_000_000, energy_full=50_000_000, power_now=8_000_000)
    with Monitor(power_supply_root=str(ps), powercap_root=str(tmp_path / "n"), hwmon_root=str(tmp_path / "n"),
                 gpu=False) as mo:
        pass
    b = mo.report["battery"]
    assert isinstance(b, Unavailable) and "Charging" in b.reason
    b = mon.BatterySource(str(tmp_path / "no-supply"))
    assert "no battery" in b.problem


# ---- the real sources ---------------------------------------------------------------------------------------------

def test_real_sources_give_figures_or_reasons():
    x = np.ones((1, 32), np.float32)
    with Monitor() as mo:
        time.sleep(0.05)
    r = mo.report
    for key in ("energy", "battery", "gpu"):
        v = r[key]
        assert (isinstance(v, Unavailable) and len(v.reason) > 10) or isinstance(v, (dict, list)), (key, v)
    if os.path.exists("/sys/class/powercap/intel-rapl:0/energy_uj") and os.access(
            "/sys/class/powercap/intel-rapl:0/energy_uj", os.R_OK):
        assert isinstance(r["energy"], dict) and r["energy"]["joules"] >= 0
    if os.path.exists("/proc/stat"):
        assert len(r["cpu"]["per_core_percent"]) == len(
            [ln for ln in open("/proc/stat") if ln.startswith("cpu") and ln[3].isdigit()])
        assert all(0 <= p <= 100 for p in r["cpu"]["per_core_percent"])
    text = str(r)
    assert "latency: unavailable (no tinyinfer run in the block)" in text
    assert x.size == 32


def test_gpu_figures_through_a_stand_in_nvml(tmp_path, monkeypatch):
    """The NVML calls pynvml makes, answered by a stand-in module: the report
    averages what the samples read."""
    import types
    readings = iter([(50, 20, 25000), (70, 30, 35000)] * 1000)
    fake = types.ModuleType("pynvml")
    fake.nvmlInit = lambda: None
    fake.nvmlDeviceGetCount = lambda: 1
    fake.nvmlDeviceGetHandleByIndex = lambda i: ("gpu", i)
    state = {}

    def util(h):
        state["now"] = next(readings)
        return types.SimpleNamespace(gpu=state["now"][0], memory=state["now"][1])
    fake.nvmlDeviceGetUtilizationRates = util
    fake.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=1 << 30)
    fake.nvmlDeviceGetPowerUsage = lambda h: state["now"][2]
    monkeypatch.setitem(__import__("sys").modules, "pynvml", fake)
    monkeypatch.setattr(mon, "_gpu_absent", None)
    roots = no_fake_sources(tmp_path)
    roots["gpu"] = True
    with Monitor(interval=0.01, **roots) as mo:
        time.sleep(0.1)
    (g,) = mo.report["gpu"]
    n = len(mo._gpu_samples)
    assert n >= 2
    utils = [50, 70] * n
    assert g["util_percent_mean"] == pytest.approx(np.mean(utils[:n]))
    assert g["power_w_mean"] == pytest.approx(np.mean(([25.0, 35.0] * n)[:n]))
    assert g["memory_used_bytes_mean"] == 1 << 30
    assert "GPU: #0 util_percent_mean" in str(mo.report)
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)        # not installed
    monkeypatch.setattr(mon, "_gpu_absent", None)
    with Monitor(**roots) as mo:
        pass
    assert isinstance(mo.report["gpu"], Unavailable) and "pynvml is not installed" in mo.report["gpu"].reason
