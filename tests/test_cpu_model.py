"""The TDP × utilisation CPU model: table, settings, default, and exact energy over known ticks."""
import math
import time

import pytest

from green_mlops.meter import host
from green_mlops.meter.cpu_model import (
    DEFAULT_W_PER_THREAD,
    CpuModelSpec,
    TdpUtilisationCpu,
    cpu_model_name,
    discover_cpu_model,
    lookup_cpu,
)
from green_mlops.meter.settings import Settings
from green_mlops.meter.source import Tick

NAN = math.nan


@pytest.mark.parametrize(("model", "tdp", "threads"), [
    ("Intel(R) Xeon(R) Platinum 8480+", 350, 112),
    ("Intel(R) Xeon(R) Platinum 8480C", 350, 112),
    ("Intel(R) Xeon(R) Platinum 8468", 350, 96),
    ("Intel(R) Xeon(R) Platinum 8462Y+", 300, 64),
    ("Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz", 270, 80),
    ("Intel(R) Xeon(R) Platinum 8275CL CPU @ 3.00GHz", 240, 48),
    ("Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz", 210, 48),
    ("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", 150, 40),
    ("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", 205, 64),
    ("AMD EPYC 9654 96-Core Processor", 360, 192),
    ("AMD EPYC 7763 64-Core Processor", 280, 128),
    ("AMD EPYC 7R13 Processor", 225, 96),
    ("AMD Ryzen 9 7950X 16-Core Processor", 170, 32),
    ("13th Gen Intel(R) Core(TM) i9-13900K", 125, 32),
])
def test_table_lookup(model, tdp, threads):
    spec = lookup_cpu(model, Settings(), visible_threads=16)
    assert spec == CpuModelSpec(model, tdp, threads, "table")


@pytest.mark.parametrize("model", [
    "Intel(R) Xeon(R) Platinum 8468V",  # a different part (48 cores, 330 W): not the 8468 row
    "Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz",  # 24 cores, 205 W: not the 6248 row
    "Intel(R) Xeon(R) Processor",  # masked name reported by the H100 KVM guest
    "unknown",
])
def test_unrecognised_models_use_default(model):
    spec = lookup_cpu(model, Settings(), visible_threads=16)
    assert spec.source == "default"
    assert spec.threads_per_package == 16
    assert spec.tdp_w == pytest.approx(16 * DEFAULT_W_PER_THREAD)
    assert spec.w_per_thread == pytest.approx(3.5)


def test_settings_override_table():
    s = Settings(cpu_tdp_w=200, cpu_threads_per_package=64)
    assert lookup_cpu("Intel(R) Xeon(R) Platinum 8480+", s, 16) == CpuModelSpec(
        "Intel(R) Xeon(R) Platinum 8480+", 200.0, 64, "settings")
    # only the TDP: the visible CPUs are taken as the package
    only_tdp = lookup_cpu("Intel(R) Xeon(R) Processor", Settings(cpu_tdp_w=120), 16)
    assert (only_tdp.tdp_w, only_tdp.threads_per_package, only_tdp.source) == (120.0, 16, "settings")


def test_settings_from_env_override():
    s = Settings.from_env({"GREEN_MLOPS_CPU_TDP_W": "350", "GREEN_MLOPS_CPU_THREADS_PER_PACKAGE": "112"})
    found = discover_cpu_model(s, "no RAPL: test", model_name="Intel(R) Xeon(R) Processor", cpus=16)
    (src,) = found.sources
    assert src.info.detail.startswith("P = 350 W TDP / 112 threads × 16 CPUs × utilisation")
    assert src.power(1.0) == pytest.approx(50.0)


def test_discover_known_model_detail_and_finding():
    found = discover_cpu_model(Settings(), "no RAPL: /sys/class/powercap does not exist",
                               model_name="Intel(R) Xeon(R) Platinum 8480+", cpus=16)
    (src,) = found.sources
    (f,) = found.findings
    assert (src.info.name, src.info.domain, src.info.provenance, src.info.method) == (
        "cpu", "cpu", "estimated", "tdp-utilisation-model")
    assert src.info.detail == ("P = 350 W TDP / 112 threads × 16 CPUs × utilisation "
                               "(TDP from built-in table for 'Intel(R) Xeon(R) Platinum 8480+')")
    assert src.counter_interval == 0
    assert (f.component, f.status, f.method) == ("cpu", "estimated", "tdp-utilisation-model")
    assert f.reason.startswith("no RAPL: /sys/class/powercap does not exist; estimated as P = 350 W")
    assert src.power(1.0) == pytest.approx(50.0)  # the paper's 16-vCPU share of a 350 W package


def test_discover_masked_model_names_the_fix():
    found = discover_cpu_model(Settings(), "no RAPL: x", model_name="Intel(R) Xeon(R) Processor", cpus=16)
    (f,) = found.findings
    assert "'Intel(R) Xeon(R) Processor' not recognised" in f.reason
    assert "GREEN_MLOPS_CPU_TDP_W" in f.reason and "GREEN_MLOPS_CPU_THREADS_PER_PACKAGE" in f.reason
    assert "3.5 W per logical CPU" in f.reason
    assert found.sources[0].power(1.0) == pytest.approx(16 * 3.5)


def test_power_and_energy_over_ticks():
    spec = CpuModelSpec("Intel(R) Xeon(R) Platinum 8480+", 350.0, 112, "table")  # 3.125 W per thread
    src = TdpUtilisationCpu(spec, cpus=16)
    first = src.read(Tick(t=100.0, full=True, cpu_util=NAN))
    assert first.energy_J == 0.0 and math.isnan(first.power_W)
    assert "cpu.util_pct" not in first.extras
    # (t, utilisation over the interval ending at t, expected W, expected cumulative J)
    steps = [(101.0, 0.5, 25.0, 25.0),     # 3.125 × 16 × 0.5 = 25 W for 1 s
             (103.0, 1.0, 50.0, 125.0),    # 50 W for 2 s
             (103.5, 0.0, 0.0, 125.0),     # idle
             (104.5, 0.25, 12.5, 137.5)]   # 12.5 W for 1 s
    for t, u, p, e in steps:
        r = src.read(Tick(t=t, full=False, cpu_util=u))
        assert r.power_W == pytest.approx(p)
        assert r.energy_J == pytest.approx(e)
        assert r.extras["cpu.util_pct"] == pytest.approx(u * 100)
    # an interval with no utilisation figure adds nothing and says so with NaN power
    r = src.read(Tick(t=105.0, full=False, cpu_util=NAN))
    assert math.isnan(r.power_W) and r.energy_J == pytest.approx(137.5)


def test_first_tick_with_utilisation_has_power_but_no_energy():
    src = TdpUtilisationCpu(CpuModelSpec("x", 56.0, 16, "default"), cpus=16)
    r = src.read(Tick(t=5.0, full=True, cpu_util=0.5))
    assert r.energy_J == 0.0 and r.power_W == pytest.approx(28.0)


def test_cgroup_quota_caps_busy_cpus():
    # utilisation measured over 16 affine CPUs, but a quota grants 4: busy CPUs = min(u × 16, 4)
    src = TdpUtilisationCpu(CpuModelSpec("x", 350.0, 112, "table"), cpus=4)
    src.read(Tick(t=0.0, full=True, cpu_util=NAN, cpu_count=16))
    r = src.read(Tick(t=2.0, full=False, cpu_util=0.125, cpu_count=16))  # 2 busy CPUs
    assert r.power_W == pytest.approx(6.25) and r.energy_J == pytest.approx(12.5)
    r = src.read(Tick(t=3.0, full=False, cpu_util=0.5, cpu_count=16))  # 8 busy, capped at 4
    assert r.power_W == pytest.approx(12.5) and r.energy_J == pytest.approx(25.0)


def test_cpu_model_name_is_a_string():
    name = cpu_model_name()
    assert isinstance(name, str) and name and name == " ".join(name.split())


def test_real_machine_integration():
    """No doubles: this machine's model name, CPUs and utilisation."""
    found = discover_cpu_model(Settings(), "no RAPL: integration test")
    (src,) = found.sources
    assert src.info.provenance == "estimated" and found.findings[0].status == "estimated"
    util = host.CpuUtilisation()
    cpus = host.usable_cpus()
    src.read(Tick(t=0.0, full=True, cpu_util=NAN, cpu_count=len(cpus)))
    end = time.monotonic() + 0.15  # some work between the ticks, longer than the kernel's 10 ms tick
    while time.monotonic() < end:
        sum(i * i for i in range(1000))
    u = util.sample()
    r = src.read(Tick(t=0.5, full=False, cpu_util=u, cpu_count=len(cpus)))
    assert math.isfinite(u) and 0.0 <= u <= 1.0
    assert math.isfinite(r.power_W) and 0.0 <= r.power_W <= src.spec.w_per_thread * src.cpus + 1e-9
    assert r.energy_J == pytest.approx(r.power_W * 0.5)
    assert src.cpus == pytest.approx(host.effective_cpu_count())


def test_utilisation_between_close_samples_repeats_the_last_value():
    util = host.CpuUtilisation()
    time.sleep(0.05)
    first = util.sample()
    assert math.isfinite(first)
    second = util.sample()  # microseconds later: no CPU time has been accounted yet
    assert math.isfinite(second)
