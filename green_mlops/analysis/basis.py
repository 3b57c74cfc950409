"""Which energy the analysis uses: net of idle (the paper's Eq. 1–2) when every run has it for every phase
over the same window as its time, else gross for everything, said so; never a mix of the two."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from green_mlops.analysis.schema import PHASES, device_col, net_col, per_sample_col
from green_mlops.metrics.numbers import column

__all__ = ["GROSS_LABEL", "NET_LABEL", "Basis", "choose_basis"]

NET_LABEL = "net of idle (paper Eq. 1–2)"
GROSS_LABEL = "gross (no idle baseline in this data)"


@dataclass(frozen=True)
class Basis:
    """The energy every finding, correlation, predictor and figure uses, with why."""

    net: bool
    label: str
    why: str = ""

    def energy(self, phase: str) -> str:
        """Column of the phase's total energy."""
        return net_col(phase) if self.net else f"{phase}_energy_J"

    def device(self, phase: str, domain: str) -> str:
        """Column of one device's energy in the phase."""
        return net_col(phase, domain) if self.net else device_col(phase, domain)

    def per_sample(self, phase: str) -> str:
        """Column of the phase's energy per sample."""
        return per_sample_col(phase, self.net)

    @property
    def short(self) -> str:
        return "net" if self.net else "gross"


def choose_basis(runs: pd.DataFrame) -> Basis:
    """Net when each phase that has a gross energy has its net for every such run; else gross, with what is
    missing (a training net over the steps window only does not count: its window is not the fit's)."""
    missing = []
    for phase in PHASES:
        gross, net = column(runs, f"{phase}_energy_J"), column(runs, net_col(phase))
        lacking = int((gross.notna() & net.isna()).sum())
        if lacking:
            stage = "fit" if phase == "train" else "test/predict"
            missing.append(f"{lacking} of {int(gross.notna().sum())} runs lack net {phase} energy "
                           f"(energy/{stage.split('/')[-1]}_net_J or an idle baseline in the stage summary)")
    if not missing and column(runs, net_col("train")).notna().any():
        return Basis(True, NET_LABEL, "every run measured idle power before it; net = gross − idle power × the "
                                      "phase's own duration, per device and in total")
    steps = column(runs, "train_steps_net_J").notna().any()
    why = "; ".join(missing) or "no run has a net energy"
    if steps:
        why += ("; the per-step energy/net_J covers the training steps only (not the fit window its time covers), "
                "so it is not used")
    return Basis(False, GROSS_LABEL, why)
