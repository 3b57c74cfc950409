"""CO2e from energy: energy (kWh) × carbon intensity of the grid (g CO2e/kWh) × PUE.

The per-country figures are life-cycle grid intensities for 2023 from Ember's Yearly Electricity
Data as republished by Our World in Data ("carbon intensity of electricity generation",
gCO2e/kWh), rounded to whole grams; check the current figure for your grid there and set your own with ``g_per_kwh=`` or ``GREEN_MLOPS_CARBON_INTENSITY``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

#: g CO2e per kWh, Ember 2023 via Our World in Data, by ISO 3166 alpha-2 code.
COUNTRY_INTENSITY_G_PER_KWH: dict[str, float] = {
    "WORLD": 481, "AU": 549, "AT": 111, "BE": 139, "BR": 98, "CA": 171, "CH": 35, "CL": 292, "CN": 582,
    "CZ": 449, "DE": 381, "DK": 151, "ES": 174, "FI": 79, "FR": 56, "GB": 238, "IE": 282, "IN": 713,
    "IT": 331, "JP": 485, "KR": 432, "MX": 424, "NL": 268, "NO": 31, "PL": 662, "PT": 165, "SE": 41,
    "SG": 470, "TW": 561, "US": 369, "ZA": 708,
}
SOURCE = "Ember 2023 yearly electricity data via Our World in Data"


@dataclass(frozen=True)
class CarbonIntensity:
    """Grams of CO2e per kWh, and where the figure came from."""

    g_per_kwh: float
    source: str
    region: str | None = None


def carbon_intensity(country: str | None = None, g_per_kwh: float | None = None) -> CarbonIntensity:
    """The intensity to use: a given number, else a country, else the environment, else the world average."""
    if g_per_kwh is None and country is None:
        env_value = os.environ.get("GREEN_MLOPS_CARBON_INTENSITY", "").strip()
        if env_value:
            try:
                g_per_kwh = float(env_value)
            except ValueError:
                raise ValueError(f"GREEN_MLOPS_CARBON_INTENSITY={env_value!r} is not a number of g CO2e/kWh "
                                 "(e.g. 369)") from None
            return _given(g_per_kwh, "GREEN_MLOPS_CARBON_INTENSITY")
        country = os.environ.get("GREEN_MLOPS_COUNTRY", "").strip() or None
    if g_per_kwh is not None:
        return _given(g_per_kwh, "set by the user")
    if country is None:
        return CarbonIntensity(COUNTRY_INTENSITY_G_PER_KWH["WORLD"], f"world average, {SOURCE}", "WORLD")
    code = country.strip().upper()
    if code not in COUNTRY_INTENSITY_G_PER_KWH:
        known = ", ".join(sorted(COUNTRY_INTENSITY_G_PER_KWH))
        raise ValueError(f"no carbon intensity for country {country!r}; use one of {known}, "
                         "or pass the grid's g CO2e/kWh as a number (carbon_g_per_kwh=...)")
    return CarbonIntensity(COUNTRY_INTENSITY_G_PER_KWH[code], SOURCE, code)


def _given(value: float, source: str) -> CarbonIntensity:
    if not (isinstance(value, (int, float)) and value >= 0):
        raise ValueError(f"carbon intensity must be 0 or more g CO2e/kWh (e.g. 369); got {value!r}")
    return CarbonIntensity(float(value), source)


def co2e_g(energy_J: float, intensity: CarbonIntensity, pue: float = 1.0) -> float:
    """Grams of CO2e for ``energy_J`` at ``intensity``, scaled by the data centre's PUE (≥ 1)."""
    if not (isinstance(pue, (int, float)) and pue >= 1):
        raise ValueError(f"PUE must be 1 or more (1.0 = no data-centre overhead; typical 1.1–1.6); got {pue!r}")
    return energy_J / 3.6e6 * intensity.g_per_kwh * pue
