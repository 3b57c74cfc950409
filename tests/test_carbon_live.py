"""Live carbon intensity: a local HTTP server answering as Electricity Maps documents; errors fall back to the table."""
import json
import logging
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from green_mlops.metrics import carbon_live
from green_mlops.metrics.emissions import COUNTRY_INTENSITY_G_PER_KWH, ENV_COUNTRY, ENV_INTENSITY, carbon_intensity


class FakeElectricityMaps(BaseHTTPRequestHandler):
    mode = "ok"
    requests: list = []

    def do_GET(self):  # http.server's name
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        type(self).requests.append((url.path, query, self.headers.get("auth-token")))
        if self.mode == "slow":
            time.sleep(1.0)
        if self.mode == "error":
            return self._answer(401, {"status": "error", "message": "Invalid auth-token"})
        if self.mode == "garbage":
            return self._answer(200, b"<html>maintenance</html>")
        zone = query.get("zone", "FR")  # no zone: the caller "located by IP" in France
        self._answer(200, {"zone": zone, "carbonIntensity": 302, "datetime": "2026-12-02T08:00:00.000Z",
                           "updatedAt": "2026-12-02T07:52:08.871Z", "emissionFactorType": "lifecycle",
                           "isEstimated": False, "estimationMethod": None})

    def _answer(self, status, body):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up (the timeout test)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server(monkeypatch):
    FakeElectricityMaps.mode, FakeElectricityMaps.requests = "ok", []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeElectricityMaps)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    for name in (ENV_INTENSITY, ENV_COUNTRY, "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(carbon_live.ENV_TOKEN, "secret-token")
    monkeypatch.setenv(carbon_live.ENV_URL, f"http://127.0.0.1:{httpd.server_port}/v3")
    yield FakeElectricityMaps
    httpd.shutdown()
    httpd.server_close()


def test_live_intensity_for_a_country_and_its_source(server):
    ci = carbon_intensity(country="DEU")
    assert ci.g_per_kwh == 302 and ci.region == "DE"
    assert "Electricity Maps live" in ci.source and "zone DE" in ci.source and "2026-12-02T08:00" in ci.source
    (path, query, token), = server.requests
    assert path == "/v3/carbon-intensity/latest" and token == "secret-token"
    assert query == {"zone": "DE", "shouldUseFallbackCallerLookup": "false"}


def test_no_country_lets_the_api_locate_the_caller_and_a_zone_beyond_the_table_works(server):
    ci = carbon_intensity()
    assert ci.region == "FR" and ci.g_per_kwh == 302 and server.requests[-1][1] == {}
    assert carbon_intensity(country="US-CAL-CISO").region == "US-CAL-CISO"


def test_numbers_and_no_token_never_ask(server, monkeypatch):
    assert carbon_intensity(g_per_kwh=100).source == "set by the user"
    monkeypatch.setenv(ENV_INTENSITY, "55")
    assert carbon_intensity().g_per_kwh == 55
    monkeypatch.delenv(ENV_INTENSITY)
    monkeypatch.delenv(carbon_live.ENV_TOKEN)
    assert carbon_intensity(country="DE").g_per_kwh == COUNTRY_INTENSITY_G_PER_KWH["DE"]
    assert server.requests == []


@pytest.mark.parametrize("mode, why", [("error", "HTTP 401"), ("garbage", "other than JSON"), ("slow", "no answer")])
def test_failures_fall_back_to_the_table_saying_why(server, monkeypatch, caplog, mode, why):
    server.mode = mode
    monkeypatch.setattr(carbon_live, "TIMEOUT_S", 0.3)
    with caplog.at_level(logging.WARNING, logger="green_mlops"):
        ci = carbon_intensity(country="DE")
    assert ci.g_per_kwh == COUNTRY_INTENSITY_G_PER_KWH["DE"] and ci.region == "DE"
    assert "Ember" in ci.source and why in ci.source
    (line,) = [r.getMessage() for r in caplog.records]
    assert why in line and "\n" not in line and "table" in line


def test_a_zone_neither_source_knows_is_refused_with_both_reasons(server):
    server.mode = "error"
    with pytest.raises(ValueError, match="no carbon intensity for country='XX'.*HTTP 401"):
        carbon_intensity(country="XX")


def test_the_callback_keeps_the_live_source_for_its_params(server):
    from green_mlops.lightning import EnergyCallback

    cb = EnergyCallback(country="DE")
    assert cb.intensity.g_per_kwh == 302 and cb.intensity.source.startswith("Electricity Maps live")
