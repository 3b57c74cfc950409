"""CO2e from energy: energy (kWh) × carbon intensity of the grid (g CO2e/kWh) × PUE.

Which intensity (first that applies):

1. a number the user gives (``g_per_kwh=``; ``carbon_g_per_kwh=`` on the callback and autolog);
2. a country the user gives (``country=``), looked up in :data:`COUNTRY_INTENSITY_G_PER_KWH`;
3. the environment: ``GREEN_MLOPS_CARBON_INTENSITY`` (a number, g CO2e/kWh), else ``GREEN_MLOPS_COUNTRY``;
4. the world average, and the result's ``source`` says so.

Where 2–4 would read the table, ``$ELECTRICITYMAPS_API_TOKEN`` asks Electricity Maps for the grid's
live figure first, the table staying the offline fallback (:mod:`green_mlops.metrics.carbon_live`).

The table is a yearly national average of the generation mix: good for a first estimate, not for a
grid that changes by the hour or a data centre with its own power contract. Pass your own number then.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass

from green_mlops.metrics.carbon_live import live_or_table

__all__ = [
    "COUNTRY_INTENSITY_G_PER_KWH",
    "DATA_SOURCE",
    "ENV_COUNTRY",
    "ENV_INTENSITY",
    "CarbonIntensity",
    "carbon_intensity",
    "co2e_g",
]

ENV_INTENSITY = "GREEN_MLOPS_CARBON_INTENSITY"
ENV_COUNTRY = "GREEN_MLOPS_COUNTRY"

#: Where the table's figures come from.
DATA_SOURCE = "Ember yearly electricity data 2023, via Our World in Data"

# Life-cycle carbon intensity of electricity generation in 2023, g CO2-equivalent per kWh, rounded to
# whole grams. Dataset: Ember, "Yearly Electricity Data" (2024 release; world figure from Ember's Global
# Electricity Review 2024: 481 g/kWh), as republished by Our World in Data, "Carbon intensity of
# electricity generation" (https://ourworldindata.org/grapher/carbon-intensity-electricity).
# Keys are ISO 3166-1 alpha-2 codes; alpha-3 codes are accepted too (see _ALPHA3).
COUNTRY_INTENSITY_G_PER_KWH: dict[str, float] = {
    "WORLD": 481,
    "AR": 354, "AT": 111, "AU": 549, "BD": 691, "BE": 138, "BR": 98, "CA": 170, "CH": 35, "CL": 291,
    "CN": 582, "CO": 260, "CZ": 450, "DE": 381, "DK": 152, "EG": 570, "ES": 174, "FI": 79, "FR": 56,
    "GB": 238, "IE": 291, "IN": 713, "IR": 655, "IT": 331, "JP": 485, "KR": 432, "MX": 424, "NL": 268,
    "NO": 30, "PL": 662, "PT": 165, "SE": 41, "SG": 470, "TW": 561, "US": 369, "ZA": 708,
}

_ALPHA3: dict[str, str] = {
    "ARG": "AR", "AUT": "AT", "AUS": "AU", "BGD": "BD", "BEL": "BE", "BRA": "BR", "CAN": "CA", "CHE": "CH",
    "CHL": "CL", "CHN": "CN", "COL": "CO", "CZE": "CZ", "DEU": "DE", "DNK": "DK", "EGY": "EG", "ESP": "ES",
    "FIN": "FI", "FRA": "FR", "GBR": "GB", "IRL": "IE", "IND": "IN", "IRN": "IR", "ITA": "IT", "JPN": "JP",
    "KOR": "KR", "MEX": "MX", "NLD": "NL", "NOR": "NO", "POL": "PL", "PRT": "PT", "SWE": "SE", "SGP": "SG",
    "TWN": "TW", "USA": "US", "ZAF": "ZA",
    "UK": "GB", "OWID_WRL": "WORLD",  # common aliases: ISO's reserved UK, Our World in Data's world code
}


@dataclass(frozen=True)
class CarbonIntensity:
    """Grams of CO2e per kWh, where the figure came from, and the region it is for (None if unknown)."""

    g_per_kwh: float
    source: str
    region: str | None = None


def carbon_intensity(country: str | None = None, g_per_kwh: float | None = None) -> CarbonIntensity:
    """The intensity to use: a given number, else a country, else the environment, else the world average.

    ``country`` is an ISO 3166 alpha-2 or alpha-3 code (case-insensitive), or ``"WORLD"``. With both
    arguments the number wins and the country only labels it. Raises ValueError, saying how to fix it,
    on an unknown country or an intensity that is negative or not a number.
    """
    if g_per_kwh is not None:
        region = _code(country) if country is not None else None
        return CarbonIntensity(_valid_intensity(g_per_kwh, "g_per_kwh"), "set by the user", region)
    if country is not None:
        return live_or_table(_code(country), lambda: _from_table(country, "country"))
    env_value = os.environ.get(ENV_INTENSITY, "").strip()
    if env_value:
        try:
            value = float(env_value)
        except ValueError:
            raise ValueError(f"{ENV_INTENSITY}={env_value!r} is not a number: set it to the grid's g CO2e/kWh "
                             f"(e.g. {ENV_INTENSITY}=369), or unset it and set {ENV_COUNTRY} instead") from None
        region = _code(os.environ.get(ENV_COUNTRY, "")) or None
        return CarbonIntensity(_valid_intensity(value, ENV_INTENSITY), ENV_INTENSITY, region)
    env_country = os.environ.get(ENV_COUNTRY, "").strip()
    if env_country:
        return live_or_table(_code(env_country), lambda: _from_table(env_country, ENV_COUNTRY))
    world = COUNTRY_INTENSITY_G_PER_KWH["WORLD"]
    return live_or_table(None, lambda: CarbonIntensity(  # no zone: Electricity Maps locates the caller by IP
        float(world), f"world average ({DATA_SOURCE}); pass country= or g_per_kwh= or set {ENV_COUNTRY} for your "
        "grid", "WORLD"))


def co2e_g(energy_J: float, intensity: CarbonIntensity, pue: float = 1.0) -> float:
    """Grams of CO2e for ``energy_J`` joules: kWh × g CO2e/kWh × PUE.

    ``pue`` is the data centre's power usage effectiveness (facility energy / IT energy, ≥ 1; 1.0 = no
    overhead counted). ``energy_J`` is passed through as given, so a slightly negative net energy (idle
    subtracted) gives a slightly negative mass rather than an error.
    """
    if not isinstance(intensity, CarbonIntensity):
        raise ValueError(f"intensity must be a CarbonIntensity, got {type(intensity).__name__}; "
                         "build one with carbon_intensity(g_per_kwh=...) or carbon_intensity(country=...)")
    if isinstance(pue, bool) or not isinstance(pue, (int, float)) or not math.isfinite(pue) or pue < 1:
        raise ValueError(f"PUE must be a number ≥ 1 (1.0 = no data-centre overhead; typical 1.1–1.6); got {pue!r}")
    return energy_J / 3.6e6 * intensity.g_per_kwh * pue


def _valid_intensity(value: object, name: str) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value >= 0
    if not ok:
        raise ValueError(f"{name}: carbon intensity must be 0 or more g CO2e/kWh, a finite number (e.g. 369 for "
                         f"the US grid); got {value!r}")
    if value > MAX_USUAL_INTENSITY:  # type: ignore[operator]
        warnings.warn(f"{name}={value!r} g CO2e/kWh is above any grid's ({MAX_USUAL_INTENSITY} for pure coal "
                      "is the most); using it as given, but check the unit", UserWarning, stacklevel=3)
    return float(value)  # type: ignore[arg-type]


MAX_USUAL_INTENSITY = 1200  # g CO2e/kWh: coal-fired generation, the dirtiest grids come close


def _code(country: str) -> str:
    code = str(country).strip().upper()
    return _ALPHA3.get(code, code)


def _from_table(country: str, given_as: str) -> CarbonIntensity:
    code = _code(country)
    if code not in COUNTRY_INTENSITY_G_PER_KWH:
        known = ", ".join(sorted(COUNTRY_INTENSITY_G_PER_KWH))
        raise ValueError(
            f"no carbon intensity for {given_as}={country!r}. Known ISO 3166 codes (alpha-2, or their alpha-3): "
            f"{known}. For another grid pass its intensity as a number instead: carbon_intensity(g_per_kwh=...), "
            f"carbon_g_per_kwh=... on EnergyCallback and autolog, or {ENV_INTENSITY}=<g CO2e/kWh>")
    source = DATA_SOURCE if given_as == "country" else f"{DATA_SOURCE}, country from {ENV_COUNTRY}"
    return CarbonIntensity(float(COUNTRY_INTENSITY_G_PER_KWH[code]), source, code)
