"""Carbon intensity: where the figure comes from, in which order, and CO2e by hand."""
import dataclasses
import math

import pytest

from green_mlops.metrics.emissions import (
    _ALPHA3,
    COUNTRY_INTENSITY_G_PER_KWH,
    ENV_COUNTRY,
    ENV_INTENSITY,
    CarbonIntensity,
    carbon_intensity,
    co2e_g,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv(ENV_INTENSITY, raising=False)
    monkeypatch.delenv(ENV_COUNTRY, raising=False)


def test_table_is_sane():
    assert ENV_INTENSITY == "GREEN_MLOPS_CARBON_INTENSITY" and ENV_COUNTRY == "GREEN_MLOPS_COUNTRY"
    assert len(COUNTRY_INTENSITY_G_PER_KWH) >= 31 and "WORLD" in COUNTRY_INTENSITY_G_PER_KWH
    assert all(0 < v < 1200 for v in COUNTRY_INTENSITY_G_PER_KWH.values())
    assert all(len(k) == 2 for k in COUNTRY_INTENSITY_G_PER_KWH if k != "WORLD")
    assert all(v in COUNTRY_INTENSITY_G_PER_KWH for v in _ALPHA3.values())
    assert COUNTRY_INTENSITY_G_PER_KWH["FR"] < COUNTRY_INTENSITY_G_PER_KWH["WORLD"] < COUNTRY_INTENSITY_G_PER_KWH["IN"]


def test_world_average_by_default_and_says_so():
    ci = carbon_intensity()
    assert ci == CarbonIntensity(COUNTRY_INTENSITY_G_PER_KWH["WORLD"], ci.source, "WORLD")
    assert "world average" in ci.source and "Ember" in ci.source


@pytest.mark.parametrize("code", ["FR", "fr", " Fr ", "FRA", "fra"])
def test_country_by_alpha2_or_alpha3(code):
    ci = carbon_intensity(code)
    assert ci.g_per_kwh == COUNTRY_INTENSITY_G_PER_KWH["FR"] and ci.region == "FR" and "Ember" in ci.source


def test_aliases():
    assert carbon_intensity("UK").region == "GB" and carbon_intensity("USA").region == "US"
    assert carbon_intensity("world").region == "WORLD"


def test_user_number_wins_over_everything(monkeypatch):
    monkeypatch.setenv(ENV_INTENSITY, "123")
    monkeypatch.setenv(ENV_COUNTRY, "DE")
    ci = carbon_intensity("FR", g_per_kwh=400)
    assert ci.g_per_kwh == 400.0 and ci.source == "set by the user" and ci.region == "FR"
    assert carbon_intensity(g_per_kwh=0).g_per_kwh == 0.0  # a fully renewable contract is allowed


def test_user_country_wins_over_environment(monkeypatch):
    monkeypatch.setenv(ENV_INTENSITY, "123")
    assert carbon_intensity("SE").g_per_kwh == COUNTRY_INTENSITY_G_PER_KWH["SE"]


def test_environment_number_then_country(monkeypatch):
    monkeypatch.setenv(ENV_COUNTRY, "de")
    ci = carbon_intensity()
    assert ci.g_per_kwh == COUNTRY_INTENSITY_G_PER_KWH["DE"] and ci.region == "DE" and ENV_COUNTRY in ci.source
    monkeypatch.setenv(ENV_INTENSITY, " 123.5 ")
    ci = carbon_intensity()
    assert ci.g_per_kwh == 123.5 and ci.source == ENV_INTENSITY and ci.region == "DE"


def test_co2e_by_hand():
    ci = carbon_intensity(g_per_kwh=400)
    assert co2e_g(3.6e6, ci) == pytest.approx(400.0)  # 1 kWh
    assert co2e_g(3.6e6, ci, pue=1.5) == pytest.approx(600.0)
    assert co2e_g(1800.0, ci, pue=1) == pytest.approx(0.2)  # 0.5 Wh
    assert co2e_g(0.0, ci) == 0.0
    us = carbon_intensity("US")
    assert co2e_g(7.2e6, us, pue=1.2) == pytest.approx(2 * COUNTRY_INTENSITY_G_PER_KWH["US"] * 1.2)


def test_unknown_country_names_the_fix():
    with pytest.raises(ValueError) as err:
        carbon_intensity("XX")
    msg = str(err.value)
    assert "'XX'" in msg and "g_per_kwh=" in msg and "carbon_g_per_kwh" in msg and ENV_INTENSITY in msg
    assert "FR" in msg  # lists what is known


def test_unknown_country_from_environment_names_the_variable(monkeypatch):
    monkeypatch.setenv(ENV_COUNTRY, "Atlantis")
    with pytest.raises(ValueError, match=ENV_COUNTRY):
        carbon_intensity()


@pytest.mark.parametrize("bad", [-1, -0.001, float("nan"), float("inf"), True, "400"])
def test_bad_intensity_numbers(bad):
    with pytest.raises(ValueError, match="0 or more"):
        carbon_intensity(g_per_kwh=bad)


@pytest.mark.parametrize("value", ["lots", "-5", "nan"])
def test_bad_environment_intensity(monkeypatch, value):
    monkeypatch.setenv(ENV_INTENSITY, value)
    with pytest.raises(ValueError, match=ENV_INTENSITY):
        carbon_intensity()


@pytest.mark.parametrize("pue", [0.9, 0, -1, float("nan"), float("inf"), "1.2"])
def test_bad_pue(pue):
    with pytest.raises(ValueError, match="PUE must be a number ≥ 1"):
        co2e_g(1.0, carbon_intensity(g_per_kwh=100), pue=pue)


def test_intensity_must_be_a_carbon_intensity():
    with pytest.raises(ValueError, match="carbon_intensity"):
        co2e_g(1.0, 400.0)  # type: ignore[arg-type]


def test_intensity_is_frozen():
    ci = carbon_intensity()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ci.g_per_kwh = 1.0  # type: ignore[misc]
    assert math.isfinite(ci.g_per_kwh)
