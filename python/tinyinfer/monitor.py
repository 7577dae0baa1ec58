"""tinyinfer.Monitor: what a block of inference work cost in time, memory,
CPU, energy, battery and GPU (docs/monitoring.md explains every figure).

    with tinyinfer.Monitor() as mon:
        for x in batch:
            model.run(x)
    print(mon.report)            # a table; mon.report.to_dict() for JSON

While a monitor is active, every session of the library logs the time of
its runs in C (tinf_session_set_run_log: two clock reads per timed run;
every run is timed while runs take 16 us or more, one in 16 of shorter
ones unless time_every_run=True); a
background thread samples RSS, the RAPL energy counters (so they cannot wrap
unseen), the battery's power draw and the GPU every `interval` seconds. With
no monitor active nothing is logged or sampled.

Every source that cannot be read gives `Unavailable(reason)` in its field,
never a made-up number; the energy estimate from CPU time and a per-core
power figure (`watts_per_core`, default DEFAULT_WATTS_PER_CORE or
$TINYINFER_WATTS_PER_CORE) is a separate field labelled as an estimate.
The system folders are parameters (`powercap_root`, `hwmon_root`,
`power_supply_root`, `proc_root`), so tests pass fake trees.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from . import _lib
from . import model as _model

L = _lib.lib

DEFAULT_INTERVAL = 0.25        # seconds between background samples
DEFAULT_LOG_CAPACITY = 65536   # run times kept per session (the last ones; runs are counted beyond)
# A loaded CPU core's power draw used for the energy *estimate* when no
# meter is readable: roughly 2-5 W for a laptop or desktop x86-64 core at
# full load, about TDP / cores (3-4 W) on servers, ~1 W for a Raspberry Pi 4
# core. Set Monitor(watts_per_core=...) or $TINYINFER_WATTS_PER_CORE.
DEFAULT_WATTS_PER_CORE = 4.0


@dataclass(frozen=True)
class Unavailable:
    """A figure that could not be measured, and why. Falsy."""
    reason: str

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return f"unavailable ({self.reason})"

    def to_json(self):
        return {"unavailable": self.reason}


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _read_int(path: str) -> int:
    return int(_read(path))


# ---- run logs: per-session run times recorded by the library ------------------------------------------------------

class _RunLog:
    __slots__ = ("session", "buf", "capacity", "batch")

    def __init__(self, session, capacity: int):
        self.session = weakref.ref(session)
        self.capacity = capacity
        self.buf = np.zeros(capacity + 2, np.uint64)   # [runs, timed runs, ring of timed runs' ns]
        shape = session.inputs[0].shape if session.inputs else ()
        self.batch = int(shape[0]) if shape else 1

    @property
    def count(self) -> int:
        return int(self.buf[0])

    @property
    def timed(self) -> int:
        return int(self.buf[1])

    def since(self, start: int) -> np.ndarray:
        """Nanoseconds of the timed runs after timed run `start` (the last `capacity` of them)."""
        n = self.timed
        k = min(n - start, self.capacity)
        if k <= 0:
            return np.zeros(0, np.uint64)
        idx = (np.arange(n - k, n) % self.capacity) + 2
        return self.buf[idx].copy()


class _Registry:
    """Attaches a run log to every session while at least one monitor is
    active (and to sessions made meanwhile); detaches them when the last
    monitor stops."""

    def __init__(self):
        self.lock = threading.RLock()
        self.active = 0
        self.logs: Dict[int, _RunLog] = {}
        self.capacity = DEFAULT_LOG_CAPACITY
        self.every_run = False
        self.serial = 0

    def _attach(self, session) -> None:
        with self.lock:
            if self.active == 0 or getattr(session, "_run_log_key", None) in self.logs:
                return
            log = _RunLog(session, self.capacity)
            with session._lock:
                if session._handle is None:
                    return
                L.tinf_session_set_run_log(session._handle, log.buf.ctypes.data_as(ctypes.POINTER(ctypes.c_uint64)),
                                           log.capacity, _lib.RUN_LOG_EVERY_RUN if self.every_run else 0)
            self.serial += 1
            session._run_log_key = self.serial
            self.logs[self.serial] = log

    def start(self, capacity: int, every_run: bool) -> Dict[int, tuple]:
        """Marks: {log key: (runs, timed runs) so far} for a new monitor."""
        with self.lock:
            if self.active == 0:
                self.capacity, self.every_run = capacity, every_run
            self.active += 1
            if self.active == 1:
                _model._session_hook = self._attach
                for s in list(_model._live_sessions):
                    self._attach(s)
            return {k: (log.count, log.timed) for k, log in self.logs.items()}

    def stop(self, marks: Dict[int, tuple]):
        """[(log, runs since the mark, their times)] for a stopping monitor;
        detaches everything when it was the last one."""
        with self.lock:
            out = [(log, log.count - marks.get(k, (0, 0))[0], log.since(marks.get(k, (0, 0))[1]))
                   for k, log in self.logs.items()]
            self.active -= 1
            if self.active == 0:
                _model._session_hook = None
                for log in self.logs.values():
                    s = log.session()
                    if s is not None:
                        with s._lock:
                            if s._handle is not None:
                                L.tinf_session_set_run_log(s._handle, None, 0, 0)
                self.logs.clear()
            return out


_registry = _Registry()


# ---- sources ----------------------------------------------------------------------------------------------------------

class ProcSource:
    """The process's RSS (current and the kernel's high-water mark) and the
    machine's per-core busy time, from /proc (psutil where /proc is absent)."""

    def __init__(self, root: str = "/proc"):
        self.root = root
        self.page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def rss(self):
        try:
            return int(_read(os.path.join(self.root, "self", "statm")).split()[1]) * self.page
        except (OSError, ValueError, IndexError) as e:
            try:
                import psutil
                return psutil.Process().memory_info().rss
            except Exception:
                return Unavailable(f"cannot read {self.root}/self/statm ({e}) and psutil is not installed")

    def hwm(self):
        """The peak RSS the kernel recorded (VmHWM), bytes."""
        try:
            for line in _read(os.path.join(self.root, "self", "status")).splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError) as e:
            return Unavailable(f"cannot read {self.root}/self/status: {e}")
        return Unavailable(f"no VmHWM in {self.root}/self/status")

    def reset_hwm(self) -> Optional[str]:
        """Resets VmHWM to the current RSS (Linux >= 4.0); None, or why not."""
        try:
            fd = os.open(os.path.join(self.root, "self", "clear_refs"), os.O_WRONLY)   # never creates it
            try:
                os.write(fd, b"5")
            finally:
                os.close(fd)
            return None
        except OSError as e:
            return f"cannot reset the peak RSS mark ({self.root}/self/clear_refs: {e})"

    def cpu_ticks(self):
        """[(busy, total)] per core, in clock ticks since boot, from /proc/stat."""
        try:
            out = []
            for line in _read(os.path.join(self.root, "stat")).splitlines():
                if line.startswith("cpu") and line[3:4].isdigit():
                    v = [int(x) for x in line.split()[1:]]
                    idle = v[3] + (v[4] if len(v) > 4 else 0)        # idle + iowait
                    total = sum(v[:8])                                # guest time is already in user
                    out.append((total - idle, total))
            return out or Unavailable(f"no cpuN lines in {self.root}/stat")
        except (OSError, ValueError) as e:
            try:
                import psutil
                return [(t.user + t.system + t.nice + t.irq + t.softirq, sum(t)) for t in psutil.cpu_times(percpu=True)]
            except Exception:
                return Unavailable(f"cannot read {self.root}/stat ({e}) and psutil is not installed")


class RaplSource:
    """Energy counters: Intel RAPL and AMD's through the powercap interface
    (/sys/class/powercap/intel-rapl:N 'package-N' and its 'dram' subzone),
    else AMD's amd_energy hwmon driver (/sys/class/hwmon/hwmonN, name
    'amd_energy', energyN_input in uJ, the 'Esocket' labels)."""

    def __init__(self, powercap_root: str = "/sys/class/powercap", hwmon_root: str = "/sys/class/hwmon"):
        self.domains: List[tuple] = []     # (name, path, wrap range in uJ or None)
        self.problem: Optional[str] = None
        zones = sorted(glob.glob(os.path.join(powercap_root, "intel-rapl:*")))
        for z in zones:
            try:
                name = _read(os.path.join(z, "name"))
            except OSError:
                continue
            # package-N and dram; psys would count the package twice, core and uncore are inside the package.
            if not (name.startswith("package") or name == "dram"):
                continue
            if name == "dram":
                name = f"dram-{os.path.basename(z).split(':')[1]}"
            try:
                rng = _read_int(os.path.join(z, "max_energy_range_uj"))
            except (OSError, ValueError):
                rng = None
            self.domains.append((name, os.path.join(z, "energy_uj"), rng))
        if not self.domains:
            for h in sorted(glob.glob(os.path.join(hwmon_root, "hwmon*"))):
                try:
                    if _read(os.path.join(h, "name")) != "amd_energy":
                        continue
                except OSError:
                    continue
                for inp in sorted(glob.glob(os.path.join(h, "energy*_input"))):
                    try:
                        label = _read(inp.replace("_input", "_label"))
                    except OSError:
                        label = os.path.basename(inp)
                    if label.lower().startswith("esocket"):
                        self.domains.append((f"package-{label[7:]}", inp, None))
        if not self.domains:
            self.problem = (f"no RAPL energy counters: neither {powercap_root}/intel-rapl:* nor an amd_energy "
                            f"sensor under {hwmon_root} (virtual machines and most ARM boards have none)")
            return
        try:
            self._raw()
        except PermissionError as e:
            self.problem = (f"permission denied reading {e.filename} (RAPL counters are root-only since Linux 5.10; "
                            f"`sudo chmod a+r` the energy_uj files to allow it)")
        except (OSError, ValueError) as e:
            self.problem = f"cannot read the RAPL counters: {e}"

    def _raw(self) -> List[int]:
        return [_read_int(p) for _, p, _ in self.domains]

    def start(self):
        self.last = self._raw()
        self.total = [0] * len(self.domains)

    def sample(self):
        """Adds the counters' increments since the last sample (handling one wrap)."""
        now = self._raw()
        for i, ((_, _, rng), a, b) in enumerate(zip(self.domains, self.last, now)):
            d = b - a
            if d < 0 and rng:
                d += rng + 1
            self.total[i] += max(d, 0)
        self.last = now

    def joules(self) -> Dict[str, float]:
        return {name: uj * 1e-6 for (name, _, _), uj in zip(self.domains, self.total)}


class BatterySource:
    """A laptop's or phone's battery from /sys/class/power_supply/BAT*:
    energy_now/energy_full (uWh) and power_now (uW), or charge_now/
    charge_full (uAh), current_now (uA) and voltage_now (uV)."""

    def __init__(self, root: str = "/sys/class/power_supply"):
        self.path = None
        self.problem: Optional[str] = None
        bats = sorted(glob.glob(os.path.join(root, "BAT*")))
        if not bats:
            self.problem = f"no battery ({root}/BAT* absent: a desktop, server or virtual machine)"
            return
        self.path = bats[0]
        try:
            self.state()
        except (OSError, ValueError) as e:
            self.problem = f"cannot read {self.path}: {e}"

    def _get(self, name: str) -> Optional[int]:
        p = os.path.join(self.path, name)
        return _read_int(p) if os.path.exists(p) else None

    def state(self) -> dict:
        """{status, energy_wh, full_wh, power_w}: energy values in Wh (None where not reported)."""
        status = _read(os.path.join(self.path, "status")) if os.path.exists(os.path.join(self.path, "status")) else "?"
        e, full, p = self._get("energy_now"), self._get("energy_full"), self._get("power_now")
        if e is None:
            c, cf, volts = self._get("charge_now"), self._get("charge_full"), self._get("voltage_now")
            cur = self._get("current_now")
            v = (volts or 0) * 1e-6
            e = c * v if c is not None and volts else None          # uAh x V = uWh
            full = cf * v if cf is not None and volts else None
            p = abs(cur) * v if cur is not None and volts else None  # uA x V = uW
        else:
            p = abs(p) if p is not None else None
        return {"status": status, "energy_wh": None if e is None else e * 1e-6,
                "full_wh": None if full is None else full * 1e-6, "power_w": None if p is None else p * 1e-6}


_gpu_absent: Optional[str] = None    # why NVML is unusable in this process, once found out


class GpuSource:
    """NVIDIA GPUs through pynvml (optional): utilization, memory, power."""

    def __init__(self):
        global _gpu_absent
        self.problem: Optional[str] = _gpu_absent
        self.handles = []
        if self.problem is not None:
            return
        try:
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import pynvml
        except ImportError:
            self.problem = _gpu_absent = "pynvml is not installed (pip install nvidia-ml-py)"
            return
        self.nvml = pynvml
        try:
            pynvml.nvmlInit()
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception as e:
            self.problem = _gpu_absent = f"no NVIDIA GPU or driver ({e})"
            return
        if not self.handles:
            self.problem = "NVML found no GPU"

    def sample(self) -> List[dict]:
        out = []
        nv = self.nvml
        for h in self.handles:
            d = {}
            try:
                u = nv.nvmlDeviceGetUtilizationRates(h)
                d["util_percent"], d["mem_util_percent"] = float(u.gpu), float(u.memory)
            except Exception:
                pass
            try:
                d["memory_used_bytes"] = int(nv.nvmlDeviceGetMemoryInfo(h).used)
            except Exception:
                pass
            try:
                d["power_w"] = nv.nvmlDeviceGetPowerUsage(h) / 1000.0
            except Exception:
                pass
            out.append(d)
        return out


# ---- the report -------------------------------------------------------------------------------------------------------

def _percentiles_us(ns: np.ndarray) -> dict:
    us = ns.astype(np.float64) * 1e-3
    return {"p50": float(np.percentile(us, 50)), "p90": float(np.percentile(us, 90)),
            "p99": float(np.percentile(us, 99)), "mean": float(us.mean()), "min": float(us.min()),
            "max": float(us.max())}


def _jsonable(v):
    if isinstance(v, Unavailable):
        return v.to_json()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


class Report(dict):
    """The monitor's figures: a dict (keys in docs/monitoring.md); str() is a
    readable table; `to_dict()` is JSON-ready (Unavailable -> {"unavailable":
    reason}); `latencies_ns` holds every logged run time."""

    latencies_ns: np.ndarray

    def to_dict(self) -> dict:
        return _jsonable(dict(self))

    def __str__(self) -> str:
        return format_report(self)


def _fmt_mb(b) -> str:
    return f"{b / 1e6:.2f} MB" if isinstance(b, (int, float)) else str(b)


def format_report(r: dict) -> str:
    lines = [f"wall {r['wall_s']:.3f} s, {r['runs']} runs ({r['samples']} samples), {r['timed_runs']} timed"]
    lat = r["latency_us"]
    if isinstance(lat, dict):
        lines.append(f"latency us (library run time): p50 {lat['p50']:.1f}  p90 {lat['p90']:.1f}  "
                     f"p99 {lat['p99']:.1f}  min {lat['min']:.1f}  max {lat['max']:.1f}")
    else:
        lines.append(f"latency: {lat}")
    lines.append(f"throughput: {r['throughput_per_s']:.1f} runs/s, {r['samples_per_s']:.1f} samples/s")
    c = r["cpu"]
    lines.append(f"CPU: user {c['user_s']:.3f} s + system {c['system_s']:.3f} s = {c['percent']:.1f}% of one core "
                 f"({c['machine_percent']:.1f}% of {c['cores']} cores)")
    pc = c["per_core_percent"]
    if isinstance(pc, list):
        lines.append("  per core busy (whole machine): " + " ".join(f"{p:.0f}%" for p in pc))
    m = r["memory"]
    lines.append(f"RSS: {_fmt_mb(m['rss_bytes'])} now, peak {_fmt_mb(m['peak_rss_bytes'])} ({m['peak_method']})")
    lib = m["library"]
    lines.append("library memory: " + ", ".join(f"{k} {_fmt_mb(v)}" for k, v in lib.items()
                                                if not isinstance(v, Unavailable)))
    lines.append(f"page faults: {r['page_faults']['minor']} minor, {r['page_faults']['major']} major; "
                 f"context switches: {r['context_switches']['voluntary']} voluntary, "
                 f"{r['context_switches']['involuntary']} involuntary")
    e = r["energy"]
    if isinstance(e, dict):
        lines.append(f"energy (RAPL): {e['joules']:.3f} J, {e['watts']:.2f} W"
                     + (f", {e['j_per_inference'] * 1e3:.4f} mJ/inference" if e["j_per_inference"] is not None else "")
                     + " (" + ", ".join(f"{k} {v:.3f} J" for k, v in e["domains"].items()) + ")")
    else:
        lines.append(f"energy: {e}")
    est = r["energy_estimate"]
    lines.append(f"energy estimate (CPU time x {est['watts_per_core']} W per core, an estimate): {est['joules']:.3f} J"
                 + (f", {est['j_per_inference'] * 1e3:.4f} mJ/inference" if est["j_per_inference"] is not None else ""))
    b = r["battery"]
    if isinstance(b, dict):
        lines.append(f"battery: {b['status']}, {b['mwh']:.3f} mWh drawn ({b['source']})"
                     + (f", {b['mwh_per_1000']:.3f} mWh per 1000 inferences" if b["mwh_per_1000"] is not None else "")
                     + (f", a full battery lasts {b['hours_full']:.1f} h at this rate" if b["hours_full"] else ""))
    else:
        lines.append(f"battery: {b}")
    g = r["gpu"]
    mo = r.get("monitor")
    if mo:
        lines.append(f"monitor: {mo['samples']} samples every {mo['interval_s']} s, sampler CPU "
                     f"{mo['sampler_cpu_s'] * 1e3:.2f} ms")
    lines.append(f"GPU: {g}" if isinstance(g, Unavailable) else
                 "GPU: " + "; ".join(f"#{i} " + ", ".join(f"{k} {v:.1f}" for k, v in d.items()) for i, d in enumerate(g)))
    return "\n".join(lines)


# ---- the monitor ------------------------------------------------------------------------------------------------------

class Monitor:
    """Context manager measuring a block of work (see the module docstring).
    After the block, `report` holds the figures (a `Report`)."""

    def __init__(self, interval: float = DEFAULT_INTERVAL, watts_per_core: Optional[float] = None,
                 log_capacity: int = DEFAULT_LOG_CAPACITY, time_every_run: bool = False, reset_peak: bool = True,
                 gpu: bool = True,
                 proc_root: str = "/proc", powercap_root: str = "/sys/class/powercap",
                 hwmon_root: str = "/sys/class/hwmon", power_supply_root: str = "/sys/class/power_supply"):
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        if not isinstance(log_capacity, int) or log_capacity < 1:
            raise ValueError(f"log_capacity must be an int >= 1, got {log_capacity!r}")
        if watts_per_core is None:
            watts_per_core = float(os.environ.get("TINYINFER_WATTS_PER_CORE", DEFAULT_WATTS_PER_CORE))
        if not watts_per_core >= 0:
            raise ValueError(f"watts_per_core must be >= 0, got {watts_per_core!r}")
        self.interval, self.watts_per_core, self.log_capacity = interval, float(watts_per_core), log_capacity
        self.reset_peak, self.use_gpu, self.time_every_run = reset_peak, gpu, bool(time_every_run)
        self.roots = dict(proc_root=proc_root, powercap_root=powercap_root, hwmon_root=hwmon_root,
                          power_supply_root=power_supply_root)
        self.report: Optional[Report] = None
        self._thread = None

    # -- sampling --
    def _sample(self) -> None:
        rss = self.proc.rss()
        if isinstance(rss, int):
            self._rss_max = max(self._rss_max, rss)
        if self.rapl.problem is None:
            try:
                self.rapl.sample()
            except OSError as e:
                self.rapl.problem = f"reading the RAPL counters failed: {e}"
        if self.battery.problem is None:
            try:
                self._bat_samples.append(self.battery.state())
            except (OSError, ValueError) as e:
                self.battery.problem = f"reading {self.battery.path} failed: {e}"
        if self.gpu is not None and self.gpu.problem is None:
            self._gpu_samples.append(self.gpu.sample())

    def _loop(self) -> None:
        c0 = time.thread_time()
        while not self._stop.wait(self.interval):
            self._sample()
            self._samples += 1
        self._sampler_cpu = time.thread_time() - c0

    def __enter__(self) -> "Monitor":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("this Monitor is already running")
        import resource
        self.proc = ProcSource(self.roots["proc_root"])
        self.rapl = RaplSource(self.roots["powercap_root"], self.roots["hwmon_root"])
        self.battery = BatterySource(self.roots["power_supply_root"])
        self.gpu = GpuSource() if self.use_gpu else None
        self._bat_samples, self._gpu_samples = [], []
        self._samples, self._sampler_cpu = 0, 0.0
        rss = self.proc.rss()
        self._rss_max = rss if isinstance(rss, int) else 0
        with _registry.lock:
            first = _registry.active == 0
            self._peak_problem = (self.proc.reset_hwm() if self.reset_peak and first else
                                  "another monitor was active" if self.reset_peak else "reset_peak=False")
            self._marks = _registry.start(self.log_capacity, self.time_every_run)
        if self.rapl.problem is None:
            self.rapl.start()
        self._cpu0 = self.proc.cpu_ticks()
        self._ru0 = resource.getrusage(resource.RUSAGE_SELF)
        self._t0 = time.perf_counter()
        self._sample()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tinyinfer-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> Report:
        if self._thread is None:
            raise RuntimeError("this Monitor is not running")
        import resource
        wall = time.perf_counter() - self._t0
        ru = resource.getrusage(resource.RUSAGE_SELF)
        cpu1 = self.proc.cpu_ticks()
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._sample()
        logs = _registry.stop(self._marks)
        self.report = self._build(wall, ru, cpu1, logs)
        return self.report

    # -- the figures --
    def _build(self, wall, ru, cpu1, logs) -> Report:
        ru0 = self._ru0
        runs = 0
        samples = 0
        parts = []
        for log, n, ns in logs:
            runs += max(n, 0)
            samples += max(n, 0) * log.batch
            parts.append(ns)
        lat = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
        r = Report()
        r.latencies_ns = lat
        r["wall_s"] = wall
        r["runs"] = runs
        r["samples"] = samples
        r["latency_us"] = (_percentiles_us(lat) if lat.size else
                           Unavailable("no tinyinfer run in the block"))
        r["timed_runs"] = int(lat.size)
        r["throughput_per_s"] = runs / wall if wall > 0 else 0.0
        r["samples_per_s"] = samples / wall if wall > 0 else 0.0
        user, system = ru.ru_utime - ru0.ru_utime, ru.ru_stime - ru0.ru_stime
        cores = os.cpu_count() or 1
        per_core = Unavailable(self._cpu0.reason) if isinstance(self._cpu0, Unavailable) else (
            Unavailable(cpu1.reason) if isinstance(cpu1, Unavailable) else
            [100.0 * (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0 for (b0, t0), (b1, t1) in zip(self._cpu0, cpu1)])
        pct = 100.0 * (user + system) / wall if wall > 0 else 0.0
        r["cpu"] = {"user_s": user, "system_s": system, "percent": pct, "machine_percent": pct / cores,
                    "cores": cores, "per_core_percent": per_core}
        rss = self.proc.rss()
        hwm = self.proc.hwm()
        if self._peak_problem is None and isinstance(hwm, int):
            peak, method = max(hwm, self._rss_max), "kernel high-water mark, reset at start"
        else:
            peak, method = self._rss_max, f"sampled every {self.interval} s ({self._peak_problem})"
        r["memory"] = {"rss_bytes": rss, "peak_rss_bytes": peak, "peak_method": method,
                       "process_peak_rss_bytes": ru.ru_maxrss * 1024, "library": library_memory()}
        r["page_faults"] = {"minor": ru.ru_minflt - ru0.ru_minflt, "major": ru.ru_majflt - ru0.ru_majflt}
        r["context_switches"] = {"voluntary": ru.ru_nvcsw - ru0.ru_nvcsw, "involuntary": ru.ru_nivcsw - ru0.ru_nivcsw}
        per_inf = (lambda j: j / samples if samples else None)
        if self.rapl.problem is None:
            by = self.rapl.joules()
            j = sum(by.values())
            r["energy"] = {"joules": j, "watts": j / wall if wall > 0 else 0.0, "j_per_inference": per_inf(j),
                           "domains": by, "source": "RAPL"}
        else:
            r["energy"] = Unavailable(self.rapl.problem)
        est = (user + system) * self.watts_per_core
        r["energy_estimate"] = {"joules": est, "j_per_inference": per_inf(est), "watts_per_core": self.watts_per_core,
                                "estimate": True}
        r["battery"] = self._battery(wall, samples, r)
        r["monitor"] = {"interval_s": self.interval, "samples": self._samples, "sampler_cpu_s": self._sampler_cpu}
        if self.gpu is None:
            r["gpu"] = Unavailable("gpu=False")
        elif self.gpu.problem is not None:
            r["gpu"] = Unavailable(self.gpu.problem)
        else:
            per_dev = []
            for i in range(len(self.gpu.handles)):
                vals: Dict[str, List[float]] = {}
                for snap in self._gpu_samples:
                    for k, v in snap[i].items():
                        vals.setdefault(k, []).append(v)
                per_dev.append({f"{k}_mean": float(np.mean(v)) for k, v in vals.items()})
            r["gpu"] = per_dev
        return r

    def _battery(self, wall, samples, r):
        if self.battery.problem is not None:
            return Unavailable(self.battery.problem)
        snaps = self._bat_samples
        status = snaps[-1]["status"]
        if status.lower() != "discharging":
            return Unavailable(f"the battery is not discharging (status {status}): on mains power the "
                               "battery's drain says nothing about this work")
        powers = [s["power_w"] for s in snaps if s["power_w"] is not None]
        e0, e1 = snaps[0]["energy_wh"], snaps[-1]["energy_wh"]
        if powers:
            mwh, source = float(np.mean(powers)) * wall / 3.6, "power_now averaged over the samples"
        elif e0 is not None and e1 is not None and e0 > e1:
            mwh, source = (e0 - e1) * 1e3, "energy_now drop"
        else:
            return Unavailable("the battery reports neither power_now nor a drop of energy_now during the block")
        full = snaps[-1]["full_wh"]
        watts = mwh * 3.6 / wall if wall > 0 else 0.0
        return {"status": status, "mwh": mwh, "source": source + " (whole system)",
                "mwh_per_1000": mwh / samples * 1000 if samples else None,
                "watts": watts, "full_wh": full,
                "hours_full": full / watts if full and watts > 0 else None}


def library_memory() -> dict:
    """Bytes the library holds now, over every open model and session of this
    process (see library_memory_of)."""
    return library_memory_of(list(_model._live_models), list(_model._live_sessions))


def library_memory_of(models, sessions) -> dict:
    """Bytes these models and sessions hold in the library: the model files
    (mapped or copied), the weights the graphs use, constants folded at load,
    weights repacked for the kernels, and the sessions' arenas."""
    if not isinstance(models, (list, tuple)):
        models = [models]
    out = {"files": 0, "weights": 0, "folded": 0, "packed": 0, "arena": 0}
    f, w, fo, p = ctypes.c_size_t(), ctypes.c_size_t(), ctypes.c_size_t(), ctypes.c_size_t()
    for m in models:
        if m._handle is None:
            continue
        L.tinf_model_memory(m._handle, ctypes.byref(f), ctypes.byref(w), ctypes.byref(fo), ctypes.byref(p))
        out["files"] += f.value
        out["weights"] += w.value
        out["folded"] += fo.value
        out["packed"] += p.value
    for s in sessions:
        if s._handle is not None:
            out["arena"] += s.arena_bytes
    out["kernel_scratch"] = Unavailable("not counted by the library: the per-op scratch buffers allocated when a "
                                        "session binds its kernels (im2col blocks, int32 accumulators, tables), "
                                        "typically kilobytes")
    return out
