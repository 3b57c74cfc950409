"""Live grid carbon intensity from Electricity Maps, used where a token is set; the fixed table otherwise.

With ``$ELECTRICITYMAPS_API_TOKEN`` set (a token from api-portal.electricitymaps.com), every intensity
that would come from :data:`green_mlops.metrics.emissions.COUNTRY_INTENSITY_G_PER_KWH` is asked of Electricity
Maps first, as CodeCarbon and Zeus do::

    GET {base}/carbon-intensity/latest?zone=DE      header  auth-token: <token>
    -> {"zone": "DE", "carbonIntensity": 302, "datetime": "2018-04-25T18:07:00.350Z", ...}

``zone`` is the country (or any Electricity Maps zone, e.g. ``US-CAL-CISO``), and the API is told not to
answer for another place; without one it locates the caller by IP. Its default emission factors are life-cycle ones, the table's basis too.
``$GREEN_MLOPS_ELECTRICITYMAPS_URL`` replaces the base URL (a proxy, a test server). An error, a
timeout (:data:`TIMEOUT_S`) or an answer without a number falls back to the table with a one-line
warning, and the intensity's ``source`` says which was used and why.
"""
from __future__ import annotations

import json
import logging
import math
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from green_mlops.metrics.emissions import CarbonIntensity

__all__ = ["DEFAULT_URL", "ENV_TOKEN", "ENV_URL", "TIMEOUT_S", "LiveIntensityError", "latest", "live_or_table"]

ENV_TOKEN = "ELECTRICITYMAPS_API_TOKEN"
ENV_URL = "GREEN_MLOPS_ELECTRICITYMAPS_URL"
DEFAULT_URL = "https://api.electricitymap.org/v3"
TIMEOUT_S = 3.0  # short: this runs before training starts, and the table is a fine answer meanwhile

log = logging.getLogger("green_mlops")


class LiveIntensityError(RuntimeError):
    """Electricity Maps gave no usable intensity; the message says why in a few words."""


def latest(zone: str | None, token: str, base_url: str | None = None,
           timeout_s: float = TIMEOUT_S) -> tuple[float, str, str]:
    """The latest intensity of ``zone``: (g CO2e/kWh, the zone answered for, the datetime it is for)."""
    base = (base_url or os.environ.get(ENV_URL, "").strip() or DEFAULT_URL).rstrip("/")
    query = {"zone": zone, "shouldUseFallbackCallerLookup": "false"} if zone else {}  # a given zone, not the IP's
    url = f"{base}/carbon-intensity/latest" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    request = urllib.request.Request(url, headers={"auth-token": token, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            body = json.loads(answer.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode("utf-8", "replace").strip().replace("\n", " ")
        raise LiveIntensityError(f"HTTP {exc.code} from {base}" + (f": {detail}" if detail else "")) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LiveIntensityError(f"no answer from {base} within {timeout_s:g} s ({reason})") from None
    except ValueError as exc:
        raise LiveIntensityError(f"{base} answered with something other than JSON ({exc})") from None
    value = body.get("carbonIntensity") if isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise LiveIntensityError(f"{base} gave no carbonIntensity for zone {zone or '(located by IP)'}: {value!r}")
    return float(value), str(body.get("zone") or zone or "unknown"), str(body.get("datetime") or "unknown time")


def live_or_table(zone: str | None, table: Callable[[], CarbonIntensity]) -> CarbonIntensity:
    """Electricity Maps' latest intensity for ``zone`` when a token is set, else (or on failure) ``table()``."""
    from green_mlops.metrics.emissions import CarbonIntensity

    token = os.environ.get(ENV_TOKEN, "").strip()
    if not token or zone == "WORLD":  # the world average is the table's own figure
        return table()
    try:
        g, answered, when = latest(zone, token, timeout_s=TIMEOUT_S)
    except LiveIntensityError as exc:
        try:
            fallback = table()
        except ValueError as table_error:
            raise ValueError(f"{table_error} (Electricity Maps, asked first: {exc})") from None
        log.warning("green-mlops: live carbon intensity unavailable (%s); using the table's %g g CO2e/kWh for %s",
                    exc, fallback.g_per_kwh, fallback.region)
        return CarbonIntensity(fallback.g_per_kwh, f"{fallback.source}; Electricity Maps unavailable: {exc}",
                               fallback.region)
    return CarbonIntensity(g, f"Electricity Maps live ({ENV_TOKEN}), zone {answered}, for {when}", answered)
