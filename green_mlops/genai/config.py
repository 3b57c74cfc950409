"""What a request-rate sweep runs: endpoint, model, rates, load shape and sampling, checked before any load.

Every check here runs before the first request, so a typo costs a message, not a sweep. The sampling
defaults are the paper's (Table 4): temperature 0, top-p 1, top-k −1, min-p 0. Each rate level runs
a warm-up, a steady window and a drain (docs/genai.md, "Steady state"); the rules that size the
warm-up and the window when they are not given, and the one rate grid every model is swept over,
are defined here.
"""
from __future__ import annotations

import ipaddress
import math
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from green_mlops.argtypes import check_number, check_seconds, check_whole
from green_mlops.meter import validate_interval

API_PATHS = {"chat": "/chat/completions", "completions": "/completions"}
#: Table 4 of the paper; ``top_k`` and ``min_p`` are vLLM extensions that other servers may refuse.
PAPER_SAMPLING: dict[str, float] = {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0}
#: The MLflow experiment sweeps log to unless told otherwise.
DEFAULT_EXPERIMENT = "green-mlops-genai"
#: Fields a server may refuse (HTTP 400/422); the probe drops them, and the run records which it dropped.
OPTIONAL_FIELDS = ("top_k", "min_p", "stream_options")
#: The request rates every model is swept over unless told otherwise (one grid, so models compare level by level).
RATE_GRID: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 40.0)
#: Auto warm-up: at least this long, and until 1.5 × the median latency of the warm-up's answered requests
#: (by Little's law the in-flight population is full once a request sent at the start has answered).
WARMUP_MIN_S = 5.0
WARMUP_LATENCY_FACTOR = 1.5
#: Auto steady window: max(30 s, 3 × the warm-up's median latency), so the window holds several generations
#: of the in-flight population and, at 0.1 s ticks, hundreds of meter samples.
STEADY_MIN_S = 30.0
STEADY_LATENCY_FACTOR = 3.0


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
    """One sweep over request rates: per level a warm-up, a steady window and a drain.

    ``duration_s`` fixes the steady window's length, ``requests`` sets it to ``requests / rate`` (that
    many arrivals expected in it); with neither it is max(``steady_min_s``, 3 × the warm-up's median
    latency). ``warmup_s`` fixes the warm-up (0: none); None sizes it from the warm-up's own latencies.
    """

    endpoint: str
    model: str
    rates: tuple[float, ...] = RATE_GRID
    duration_s: float | None = None
    requests: int | None = None
    warmup_s: float | None = None
    steady_min_s: float = STEADY_MIN_S
    warmup_min_s: float = WARMUP_MIN_S
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
        if self.duration_s is not None and self.requests is not None:
            raise ConfigError("give at most one of duration (seconds of steady window per rate level) or requests "
                              "(arrivals expected in it), e.g. --duration 60 or --requests 200; neither: sized "
                              "from the latency")
        if self.duration_s is not None:
            check_seconds("duration", self.duration_s, positive=True, example="60", error=ConfigError)
        check_whole("requests per level", self.requests, 1, allow_none=True, error=ConfigError)
        if self.arrival not in ("poisson", "constant"):
            raise ConfigError(f"arrival must be 'poisson' or 'constant'; got {self.arrival!r}")
        check_whole("max tokens", self.max_tokens, 1, error=ConfigError)
        for name in ("idle_s", "cooldown_s", *(("warmup_s",) if self.warmup_s is not None else ())):
            check_seconds(name.removesuffix("_s"), getattr(self, name), example="10", error=ConfigError)
        check_seconds("the shortest steady window", self.steady_min_s, positive=True, example="30", error=ConfigError)
        check_seconds("the shortest warm-up", self.warmup_min_s, example="10", error=ConfigError)
        for name, example in (("model_parameters", "1.2e9"), ("model_bytes", "2.5e9")):
            if getattr(self, name) is not None:
                check_number(name.replace("_", " "), getattr(self, name), positive=True, example=example,
                             error=ConfigError)
        try:
            validate_interval(self.interval_s)
        except ValueError as exc:
            raise ConfigError(f"meter {exc}") from None
        check_seconds("request timeout", self.timeout_s, positive=True, example="120", error=ConfigError)
        self.target()

    def steady_rule(self) -> str:
        """How each level's steady window is sized, in words (a run parameter)."""
        if self.duration_s is not None:
            return f"fixed {self.duration_s:g} s"
        if self.requests is not None:
            return f"{self.requests} / rate s"
        return f"max({self.steady_min_s:g} s, {STEADY_LATENCY_FACTOR:g} × warm-up median latency)"

    def warmup_rule(self) -> str:
        """How each level's warm-up is sized, in words (a run parameter)."""
        if self.warmup_s is not None:
            return f"fixed {self.warmup_s:g} s"
        return (f"until max({self.warmup_min_s:g} s, {WARMUP_LATENCY_FACTOR:g} × median latency of answered warm-up "
                f"requests), at most the request timeout")

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
        out["steady_rule"] = self.steady_rule()
        out["warmup_rule"] = self.warmup_rule()
        out.update({f"sampling.{k}": f"{v:g}" for k, v in self.sampling.items()})
        return out
