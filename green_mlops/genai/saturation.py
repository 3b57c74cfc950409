"""The saturation rate: the last rate before energy per request stops falling, latency climbs, or load is lost.

The paper (§6.2.1, Fig. 8) finds per-request energy falling with request rate, as batching fills the
GPU, until the server saturates; past that point energy per request stays flat or rises and latency
grows. Levels are read in order of rate; the first level that shows any of the three signs ends the
search, and the rate before it is the saturation rate.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

from green_mlops import names


@dataclass(frozen=True)
class Saturation:
    """``rate_rps`` is None when no tested level saturated (or the lowest already did: see ``criterion``)."""

    rate_rps: float | None
    criterion: str
    detail: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def __str__(self) -> str:
        head = "not found" if self.rate_rps is None else f"{self.rate_rps:g} rps"
        return f"saturation: {head} ({self.criterion}): {self.detail}"


def find_saturation(levels: pd.DataFrame, *, energy_tolerance: float = 0.05, latency_factor: float = 1.5,
                    latency_floor_s: float = 0.05) -> Saturation:
    """The saturation rate of a level table with ``rate_rps``, ``energy_per_request_J``, ``latency_p50_s``.

    Energy per request "stops falling" when a level's is above ``1 − energy_tolerance`` times the
    previous level's; latency "climbs" when a level's median exceeds ``latency_factor`` times the
    lowest median seen at lower rates, and by more than ``latency_floor_s`` (so that noise on
    millisecond latencies is not taken for a queue).
    """
    if levels.empty:
        return Saturation(None, "no levels", "the sweep ran no rate level")
    table = levels.sort_values(names.RATE).reset_index(drop=True)
    rates = table[names.RATE].tolist()
    for i, row in table.iterrows():
        previous = rates[i - 1] if i else None
        if not bool(row.get("sustainable", True)):
            reason = row.get("unsustainable_reason") or "rate not sustained"
            if previous is None:
                return Saturation(None, "saturated below the lowest rate",
                                  f"{rates[0]:g} rps, the lowest rate tested, was not sustained: {reason}")
            return Saturation(previous, "next rate not sustained", f"{row[names.RATE]:g} rps: {reason}")
        if previous is None:
            continue
        e_now, e_before = _f(row.get(names.ENERGY_PER_REQUEST)), _f(table.loc[i - 1].get(names.ENERGY_PER_REQUEST))
        if not math.isnan(e_now) and not math.isnan(e_before) and e_before > 0 \
                and e_now > (1 - energy_tolerance) * e_before:
            return Saturation(previous, "energy per request stopped falling",
                              f"{e_now:.4g} J per request at {row[names.RATE]:g} rps against {e_before:.4g} J at "
                              f"{previous:g} rps (less than {energy_tolerance:.0%} lower)")
        lat_now = _f(row.get("latency_p50_s"))
        lat_low = _f(table.loc[: i - 1, "latency_p50_s"].min()) if "latency_p50_s" in table else math.nan
        if not math.isnan(lat_now) and not math.isnan(lat_low) and lat_low > 0 \
                and lat_now > latency_factor * lat_low and lat_now - lat_low > latency_floor_s:
            return Saturation(previous, "latency climbed",
                              f"median latency {lat_now:.3g} s at {row[names.RATE]:g} rps against {lat_low:.3g} s "
                              f"at lower rates (more than {latency_factor:g}×)")
    if len(rates) == 1:
        return Saturation(None, "one level only", "a saturation rate needs at least two rate levels")
    return Saturation(None, "not reached", f"energy per request still falling and latency steady up to "
                                           f"{rates[-1]:g} rps, the highest rate tested")


def _f(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
