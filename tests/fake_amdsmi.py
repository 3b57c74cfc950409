"""A stand-in for AMD's ``amdsmi`` Python module (the hardware edge), injected through ``sys.modules``.

Built from the public record, not from guesses:
- Function names, arguments and dict keys: AMD SMI Python API reference
  (rocm.docs.amd.com/projects/amdsmi, "Power Queries": ``amdsmi_get_energy_count`` returns
  ``energy_accumulator``, ``counter_resolution`` (µJ per tick) and ``timestamp``; ``power`` before
  amdsmi 6.2.1) and ``amdsmi_get_power_info`` (``current_socket_power``, ``average_socket_power`` in W).
- Quirks recorded on real machines in Zeus pull request 203 (github.com/ml-energy/zeus/pull/203):
  MI300X ``average_socket_power`` is "N/A"; MI210 ``current_socket_power`` is "N/A"; an 8-GPU
  MI250X node reports ``[89, 0, 93, 0, 88, 0, 88, 0]`` W, the even die carrying both dies' power.
- Counters that disagree with power on real nodes: one that never moves (MI100, ``power`` key and
  ``counter_resolution`` 15.300000190734863 recorded in AMDResearch/hpcfund issue 21) and one that
  under-reports about 15× against the amd-smi CLI (MI210, ROCm 6.1.3, amdsmi issue #38).
- HIP index from ``amdsmi_get_gpu_enumeration_info(handle)["hip_id"]`` (amdsmi 6.4+), which may
  differ from the order of ``amdsmi_get_processor_handles`` (Zeus's note on MI350X nodes).

Each fake GPU draws ``power_W`` (settable) and accumulates it on its counter by a clock, wrapping at
``2**bits`` ticks so that tests can cross a wrap.
"""
from __future__ import annotations

import time
from types import ModuleType, SimpleNamespace

RESOLUTION_UJ = 15.300000190734863  # µJ per tick, as amdsmi returns it (a float32 15.3)


class AmdSmiLibraryException(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"AMDSMI_STATUS error {code}")
        self.code = code

    def get_error_code(self) -> int:
        return self.code


class FakeAmdGpu:
    def __init__(self, market_name: str, power_W: float = 300.0, hip_id: int = 0, *, current: bool = True,
                 average: bool = True, counter: bool = True, start_ticks: int = 0, bits: int = 64,
                 clock=time.monotonic, counter_scale: float = 1.0) -> None:
        self.market_name, self.power_W, self.hip_id = market_name, power_W, hip_id
        self.current, self.average, self.counter, self.bits, self.clock = current, average, counter, bits, clock
        self._ticks = float(start_ticks)
        self.counter_scale = counter_scale  # 0: a counter that never moves; 1/15: one that under-reports
        self._t = clock()
        self.energy_calls = 0

    def _advance(self) -> None:
        now = self.clock()
        self._ticks += self.counter_scale * self.power_W * (now - self._t) * 1e6 / RESOLUTION_UJ
        self._t = now

    def set_power(self, watts: float) -> None:
        self._advance()
        self.power_W = watts

    def accumulator(self) -> int:
        self._advance()
        return int(self._ticks) % (2**self.bits)


def make_module(gpus: list[FakeAmdGpu], *, init_error: int | None = None, old_api: bool = False) -> ModuleType:
    """A module object with amdsmi's names, backed by ``gpus`` (listed in handle order)."""
    m = ModuleType("amdsmi")
    m.AmdSmiLibraryException = AmdSmiLibraryException
    m.AmdSmiInitFlags = SimpleNamespace(INIT_AMD_GPUS=2)
    m.calls = []

    def init(flags):
        m.calls.append("init")
        if init_error is not None:
            raise AmdSmiLibraryException(init_error)

    def power_info(h: FakeAmdGpu):
        h._advance()
        return {"current_socket_power": int(h.power_W) if h.current else "N/A",
                "average_socket_power": int(h.power_W) if h.average else "N/A",
                "gfx_voltage": 868, "soc_voltage": 812, "mem_voltage": 1250, "power_limit": 750_000_000}

    def energy_count(h: FakeAmdGpu):
        if not h.counter:
            raise AmdSmiLibraryException(2)  # AMDSMI_STATUS_NOT_SUPPORTED
        h.energy_calls += 1
        key = "power" if old_api else "energy_accumulator"
        return {key: h.accumulator(), "counter_resolution": RESOLUTION_UJ, "timestamp": int(time.time() * 1e9)}

    m.amdsmi_init = init
    m.amdsmi_shut_down = lambda: m.calls.append("shut_down")
    m.amdsmi_get_processor_handles = lambda: list(gpus)
    m.amdsmi_get_gpu_enumeration_info = lambda h: {"hip_id": h.hip_id, "drm_card": h.hip_id, "hsa_id": h.hip_id}
    m.amdsmi_get_gpu_asic_info = lambda h: {"market_name": h.market_name, "vendor_id": "0x1002"}
    m.amdsmi_get_power_info = power_info
    m.amdsmi_get_energy_count = energy_count
    return m


class ManualClock:
    """A clock the test moves by hand, so energy driven into a fake is exact."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def mi250x_node(clock=time.monotonic) -> list[FakeAmdGpu]:
    """Four MI250X cards as eight dies; the even die of each card reports the pair's power."""
    watts = [89, 0, 93, 0, 88, 0, 88, 0]
    return [FakeAmdGpu("AMD Instinct MI250X", w, hip_id=i, clock=clock) for i, w in enumerate(watts)]
