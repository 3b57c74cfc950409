"""NVIDIA superchips against the fake driver at the pynvml boundary (tests/fake_nvml.py).

Behaviours from the public record: on GH200 the energy counter and module-scope power cover GPU,
Grace CPU and memory (Zeus pull request 172, Kepler pull request 1884); GB10 refuses
NVML_POWER_SCOPE_MODULE and supports GPU scope only (Zeus pull request 242); C2C is reported by
nvmlDeviceGetC2cModeInfoV (nvidia-ml-py). Arm package ids that do not start at 0 are written into
a fake /sys/devices/system/cpu tree.
"""
import json
import time
from pathlib import Path

import pytest

from green_mlops import cli
from green_mlops.meter import EnergyMeter, discover, host
from green_mlops.meter.nvml import METHOD_COUNTER, discover_nvml
from green_mlops.meter.settings import Settings
from green_mlops.meter.source import Tick
from green_mlops.meter.superchip import METHOD_MODULE_COUNTER, METHOD_MODULE_INSTANT, upgrade_superchips
from tests.fake_nvml import FakeGpu, install
from tests.test_rapl import zone


def gh200(uuid="GPU-gh00", watts=450.0, **kw):
    return FakeGpu(name="NVIDIA GH200 480GB", uuid=uuid, power=lambda t: watts, c2c=True, module_scope=True,
                   instant=False, **kw)


def gb10(watts=40.0):
    return FakeGpu(name="NVIDIA GB10", uuid="GPU-gb10", power=lambda t: watts, c2c=True, module_scope=False,
                   memory_info=False)


@pytest.fixture
def powercap(tmp_path: Path) -> Settings:
    """A readable RAPL package and DRAM zone, to prove the module keeps them out even where they exist."""
    root = tmp_path / "powercap"
    root.mkdir()
    pkg = zone(root, "intel-rapl:0", "package-0")
    zone(pkg, "intel-rapl:0:0", "dram")
    return Settings(powercap_root=str(root))


def test_gh200_is_one_module_and_cpu_dram_are_covered(monkeypatch, powercap):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    install(monkeypatch, [gh200()])
    found = discover(powercap)
    assert [s.info.name for s in found.sources] == ["module0"]
    (module,) = found.sources
    assert module.info.method == METHOD_MODULE_COUNTER and module.covers == ("cpu", "dram")
    assert "GPU + Grace CPU + memory" in module.info.detail
    status = {f.component: f for f in found.findings}
    assert status["module0"].status == "measured"
    for domain in ("cpu", "dram"):
        assert status[domain].status == "covered" and "module0" in status[domain].reason
    assert not any(f.status == "estimated" for f in found.findings)


def test_module_energy_is_the_total_no_double_counting(monkeypatch, powercap):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    (fake,) = install(monkeypatch, [gh200(watts=450.0)])
    found = discover(Settings(powercap_root=powercap.powercap_root, gpu_counter_interval=0.1))
    with EnergyMeter(interval=0.02, sources=found.sources) as meter:
        time.sleep(0.6)
    res = meter.result()
    assert [s.info.name for s in res.sources] == ["module0"]
    assert res.total_J == pytest.approx(res.source("module0").energy_J)
    assert res.total_J == pytest.approx(fake.true_energy(meter.start_time, meter.end_time), rel=0.2)
    assert res.domain_J("cpu") in (None, 0.0)


def test_module_power_curve_reads_module_scope(monkeypatch):
    install(monkeypatch, [gh200(watts=512.0, counter=False)])
    found = upgrade_superchips(discover_nvml(Settings(), env={}), Settings())
    (module,) = found.sources
    assert module.info.method == METHOD_MODULE_INSTANT and module.counter_interval == 0.0
    assert module.read(Tick(t=time.monotonic(), full=True)).power_W == pytest.approx(512.0)


def test_gb10_refuses_module_scope_so_stays_a_gpu(monkeypatch, powercap):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    install(monkeypatch, [gb10()])
    found = discover(powercap)
    names = [s.info.name for s in found.sources]
    assert names == ["gpu0", "cpu0", "dram0"]
    gpu = found.sources[0]
    assert gpu.info.method == METHOD_COUNTER and gpu.covers == ()
    assert "module-scope power is refused" in gpu.info.detail and "GPU scope only" in gpu.info.detail
    assert not any(f.status == "covered" for f in found.findings)
    assert {f.component: f.status for f in found.findings}["gpu0"] == "measured"


def test_pcie_gpu_is_untouched(monkeypatch):
    install(monkeypatch, [FakeGpu()])
    found = upgrade_superchips(discover_nvml(Settings(), env={}), Settings())
    (gpu,) = found.sources
    assert gpu.info.name == "gpu0" and "C2C" not in gpu.info.detail and gpu.covers == ()


def cpu_tree(root: Path, packages: dict[int, int]) -> Path:
    for cpu, pkg in packages.items():
        topo = root / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "physical_package_id").write_text(f"{pkg}\n")
    (root / "cpufreq").mkdir()  # sysfs holds other entries beside cpuN
    return root


def test_arm_package_ids_map_to_sockets_by_rank(tmp_path):
    root = cpu_tree(tmp_path / "cpu", {0: 256, 1: 256, 2: 4352, 3: 4352})
    assert host.socket_ranks(str(root)) == {0: 0, 1: 0, 2: 1, 3: 1}
    assert host.socket_ranks(str(tmp_path / "missing")) == {}


def test_hidden_module_leaves_its_cpus_unmetered_and_says_so(monkeypatch, tmp_path):
    root = cpu_tree(tmp_path / "cpu", {0: 256, 1: 256, 2: 4352, 3: 4352})
    monkeypatch.setattr(host, "usable_cpus", lambda: [0, 1, 2, 3])
    install(monkeypatch, [gh200("GPU-gh00"), gh200("GPU-gh01")])
    both = upgrade_superchips(discover_nvml(Settings(), env={}), Settings(), cpu_root=str(root))
    assert [s.info.name for s in both.sources] == ["module0", "module1"]
    assert not any(f.component == "cpu" for f in both.findings)
    one = upgrade_superchips(discover_nvml(Settings(), env={"CUDA_VISIBLE_DEVICES": "0"}), Settings(),
                             cpu_root=str(root))
    (gap,) = [f for f in one.findings if f.component == "cpu"]
    assert gap.status == "absent" and "socket 1" in gap.reason and "taskset" in gap.reason


def test_hardware_shows_the_module_and_covered_cpu_dram(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("GREEN_MLOPS_POWERCAP_ROOT", str(tmp_path / "none"))
    install(monkeypatch, [gh200()])
    assert cli.main(["hardware", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in data["sources"]] == ["module0"]
    status = {f["component"]: f for f in data["findings"]}
    assert status["module0"]["method"] == METHOD_MODULE_COUNTER
    assert status["cpu"]["status"] == status["dram"]["status"] == "covered"
    assert cli.main(["hardware"]) == 0
    out = capsys.readouterr().out
    assert "module0" in out and "covered" in out and "Grace CPU" in out and "estimated by a model" not in out


def test_run_tags_name_the_module_for_cpu_and_dram(monkeypatch, tmp_path):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("GREEN_MLOPS_POWERCAP_ROOT", str(tmp_path / "none"))
    install(monkeypatch, [gh200()])
    import pynvml

    from green_mlops.mlflow.context import _method_tags
    tags = _method_tags(pynvml)
    for domain in ("gpu", "cpu", "dram"):
        assert tags[f"green_mlops.method.{domain}"] == METHOD_MODULE_COUNTER
        assert tags[f"green_mlops.provenance.{domain}"] == "measured"
