"""When each request of a rate level is sent: Poisson (independent users) or constant spacing.

Offsets are seconds from the level's start. Poisson arrivals have exponential gaps of mean 1/rate,
the usual model of independent users; constant arrivals are evenly spaced. Both are seeded.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np


def arrival_offsets(rate: float, *, arrival: str = "poisson", duration_s: float | None = None,
                    requests: int | None = None, seed: int = 0) -> np.ndarray:
    """Send times (s from the level's start) for ``requests`` arrivals, or all arrivals before ``duration_s``.

    The first request goes at 0 so a level's energy window starts with load.
    """
    if not rate > 0:
        raise ValueError(f"rate must be greater than 0 requests per second; got {rate!r}")
    if (duration_s is None) == (requests is None):
        raise ValueError("give exactly one of duration_s or requests")
    if arrival not in ("poisson", "constant"):
        raise ValueError(f"arrival must be 'poisson' or 'constant'; got {arrival!r}")
    if requests is not None:
        n = int(requests)
    else:
        assert duration_s is not None
        n = max(1, int(np.ceil(duration_s * rate - 1e-9)))
    if arrival == "constant":
        offsets = np.arange(n) / rate
    else:
        rng = np.random.default_rng(seed)
        if requests is not None:
            gaps = rng.exponential(1.0 / rate, size=n - 1)
            offsets = np.concatenate([[0.0], np.cumsum(gaps)])
        else:
            gaps = rng.exponential(1.0 / rate, size=max(16, int(duration_s * rate * 2 + 16)))
            offsets = np.concatenate([[0.0], np.cumsum(gaps)])
            while offsets[-1] < duration_s:
                more = rng.exponential(1.0 / rate, size=len(gaps))
                offsets = np.concatenate([offsets, offsets[-1] + np.cumsum(more)])
            offsets = offsets[offsets < duration_s]
    return offsets


def arrival_stream(rate: float, *, arrival: str = "poisson", seed: int = 0) -> Iterator[float]:
    """Send times (s from the level's start) without end, for levels whose length is decided as they run.

    The first request goes at 0; Poisson gaps are drawn in blocks from one seeded generator.
    """
    if not rate > 0:
        raise ValueError(f"rate must be greater than 0 requests per second; got {rate!r}")
    if arrival not in ("poisson", "constant"):
        raise ValueError(f"arrival must be 'poisson' or 'constant'; got {arrival!r}")
    if arrival == "constant":
        yield from (i / rate for i in itertools.count())
        return
    rng = np.random.default_rng(seed)
    t = 0.0
    while True:
        yield t
        t += float(rng.exponential(1.0 / rate))
