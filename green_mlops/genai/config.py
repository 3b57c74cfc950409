"""What a request-rate sweep runs: endpoint, model, rates, load shape and sampling, checked before any load.

Every check here runs before the first request, so a typo costs a message, not a sweep. The sampling
defaults are the paper's (Table 4): temperature 0, top-p 1, top-k −1, min-p 0.
"""
from __future__ import annotations

import ipaddress
import math
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from green_mlops.meter.meter import validate_interval

API_PATHS = {"chat": "/chat/completions", "completions": "/completions"}
#: Table 4 of the paper; ``top_k`` and ``min_p`` are vLLM extensions that other servers may refuse.
PAPER_SAMPLING: dict[str, float] = {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0}
#: The MLflow experiment sweeps log to unless told otherwise.
DEFAULT_EXPERIMENT = "green-mlops-genai"
#: Fields a server may refuse (HTTP 400/422); the probe drops them, and the run records which it dropped.
OPTIONAL_FIELDS = ("top_k", "min_p", "stream_options")


class ConfigError(ValueError):
    """A sweep setting that cannot work; the message names the setting and the fix."""


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: ``url`` is the full completions URL, ``metrics_url`` the server's Prometheus page."""

    url: str
    api: Literal["chat", "completions"]
    metrics_url: str
    base: str


def parse_endpoint(text: str, api: str | None = None) -> Endpoint:
    """Accept ``http://host:port``, ``.../v1`` or the full ``.../v1/chat/completions`` URL."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("endpoint is empty; give the server's URL, e.g. --endpoint http://127.0.0.1:8000")
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"endpoint {text!r} is not an http(s) URL with a host; "
                          "write it like http://127.0.0.1:8000 or https://llm.example.org/v1")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigError(f"endpoint {text!r} has an invalid port; write it like http://127.0.0.1:8000") from None
    path = parts.path.rstrip("/")
    found = next((name for name, suffix in API_PATHS.items() if path.endswith(suffix)), None)
    if found is not None:
        if api is not None and api != found:
            raise ConfigError(f"endpoint {text!r} is a {found} URL but --api {api} was given; drop one of them")
        api, base_path = found, path[: -len(API_PATHS[found])]
    else:
        api = api or "chat"
        if api not in API_PATHS:
            raise ConfigError(f"api must be 'chat' or 'completions'; got {api!r}")
        base_path = path if path.endswith("/v1") else path + "/v1"
    root = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    base = root + base_path
    return Endpoint(base + API_PATHS[api], api, root + "/metrics", base)  # type: ignore[arg-type]


def is_this_machine(hostname: str) -> bool:
    """Whether ``hostname`` resolves to a loopback address or one of this machine's interface addresses."""
    import psutil

    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(hostname, None)}
    except OSError:
        return False
    mine = {a.address.split("%")[0] for addrs in psutil.net_if_addrs().values() for a in addrs}
    for address in resolved:
        address = address.split("%")[0]
        try:
            if ipaddress.ip_address(address).is_loopback or address in mine:
                return True
        except ValueError:
            continue
    return False


def parse_rates(text: str | Sequence[float]) -> tuple[float, ...]:
    """``"1,2,5"`` or a sequence → sorted unique rates, each > 0 and finite."""
    items = text.split(",") if isinstance(text, str) else list(text)
    rates = []
    for item in items:
        try:
            value = float(item)
        except (TypeError, ValueError):
            raise ConfigError(f"request rate {str(item).strip()!r} is not a number; "
                              "give rates in requests per second, e.g. --rps 1,2,5,10") from None
        if not value > 0 or math.isinf(value):
            raise ConfigError(f"request rates must be greater than 0 and finite; got {str(item).strip()!r} "
                              "(e.g. --rps 0.5,1,2)")
        rates.append(value)
    if not rates:
        raise ConfigError("no request rate given; e.g. --rps 1,2,5,10")
    return tuple(sorted(set(rates)))


@dataclass(frozen=True)
class SweepConfig:
    """One sweep over request rates; ``duration_s`` or ``requests`` sets each level's length."""

    endpoint: str
    model: str
    rates: tuple[float, ...]
    duration_s: float | None = None
    requests: int | None = None
    arrival: Literal["poisson", "constant"] = "poisson"
    max_tokens: int = 256
    api: str | None = None
    idle_s: float = 10.0
    cooldown_s: float = 2.0
    timeout_s: float = 120.0
    probe_timeout_s: float | None = None  # None: max(timeout_s, 180 s), for a server's slow first request
    seed: int = 0
    interval_s: float = 0.1
    sampling: dict[str, float] = field(default_factory=lambda: dict(PAPER_SAMPLING))
    probe: bool = True
    model_parameters: float | None = None
    model_bytes: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "rates", parse_rates(self.rates))
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("model is empty; give the name the server knows it by, e.g. --model "
                              "meta-llama/Llama-3.2-1B-Instruct")
        if (self.duration_s is None) == (self.requests is None):
            raise ConfigError("give exactly one of duration (seconds per rate level) or requests (per level), "
                              "e.g. --duration 60 or --requests 200")
        if self.duration_s is not None and not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise ConfigError(f"duration must be more than 0 seconds; got {self.duration_s!r}")
        if self.requests is not None and (not isinstance(self.requests, int) or self.requests < 1):
            raise ConfigError(f"requests per level must be a whole number ≥ 1; got {self.requests!r}")
        if self.arrival not in ("poisson", "constant"):
            raise ConfigError(f"arrival must be 'poisson' or 'constant'; got {self.arrival!r}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ConfigError(f"max tokens must be a whole number ≥ 1; got {self.max_tokens!r}")
        for name in ("idle_s", "cooldown_s"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name.removesuffix('_s')} must be 0 or more seconds; got {value!r}")
        for name in ("model_parameters", "model_bytes"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name.replace('_', ' ')} must be a number greater than 0; got {value!r}")
        try:
            validate_interval(self.interval_s)
        except ValueError as exc:
            raise ConfigError(f"meter {exc}") from None
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise ConfigError(f"request timeout must be more than 0 seconds; got {self.timeout_s!r}")
        self.target()

    def target(self) -> Endpoint:
        """The parsed endpoint (raises ConfigError for a bad URL)."""
        return parse_endpoint(self.endpoint, self.api)

    def as_params(self) -> dict[str, str]:
        """Flat parameters for MLflow and the JSON summary."""
        target = self.target()
        out = {"endpoint": target.url, "api": target.api, "model": self.model,
               "rates_rps": ",".join(f"{r:g}" for r in self.rates), "arrival": self.arrival,
               "max_tokens": str(self.max_tokens), "idle_s": f"{self.idle_s:g}", "cooldown_s": f"{self.cooldown_s:g}",
               "timeout_s": f"{self.timeout_s:g}", "seed": str(self.seed), "interval_s": f"{self.interval_s:g}"}
        if self.duration_s is not None:
            out["duration_s"] = f"{self.duration_s:g}"
        if self.requests is not None:
            out["requests_per_level"] = str(self.requests)
        out.update({f"sampling.{k}": f"{v:g}" for k, v in self.sampling.items()})
        return out
