"""A small built-in workload to see the meter work: an MLP on scikit-learn's bundled digits.

No download, a few seconds on a CPU; on a GPU it runs there. Each epoch is a meter window.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from green_mlops.extras import require
from green_mlops.meter import EnergyMeter, EnergyResult


def run_demo(epochs: int = 5, idle_s: float = 2.0, interval: float = 0.1,
             output: str | Path = "green_mlops_demo", stream=sys.stdout) -> EnergyResult:
    """Train for ``epochs``, print energy per epoch and in total, write the trace and a JSON summary."""
    import torch

    require("demo")
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32, device=device)
    y = torch.tensor(y, dtype=torch.long, device=device)
    n_train = int(0.8 * len(x))
    model = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512),
                                torch.nn.ReLU(), torch.nn.Linear(512, 10)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    meter = EnergyMeter(interval=interval, name="demo")
    print(f"demo: {epochs} epochs of an MLP on digits ({n_train} training images) on {device}", file=stream)
    if idle_s:
        print(f"demo: measuring idle power for {idle_s:g} s ...", file=stream)
        meter.measure_idle(idle_s)
    rows = []
    with meter:
        for epoch in range(1, epochs + 1):
            with meter.window(f"epoch {epoch}") as w:
                model.train()
                perm = torch.randperm(n_train, device=device)
                for _ in range(20):
                    for i in range(0, n_train, 64):
                        idx = perm[i:i + 64]
                        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                model.eval()
                with torch.no_grad():
                    acc = (model(x[n_train:]).argmax(1) == y[n_train:]).float().mean().item()
                if device == "cuda":
                    torch.cuda.synchronize()
            rows.append((epoch, acc, w))
    result = meter.result()
    for epoch, acc, w in rows:
        r = w.result()
        net = r.net_J
        print(f"epoch {epoch}: accuracy {acc:.3f}  {r.duration_s:5.2f} s  {r.total_J:8.1f} J"
              + (f"  net {net:8.1f} J" if net is not None else ""), file=stream)
    print("\n" + result.table(), file=stream)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    meter.export_trace(out / "trace.parquet")
    summary = {"result": result.as_dict(), "epochs": [{"epoch": e, "accuracy": a, **w.result().as_dict()}
                                                        for e, a, w in rows],
               "findings": [f.as_dict() for f in meter.findings]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"\ndemo: wrote {out / 'trace.parquet'} and {out / 'summary.json'}", file=stream)
    return result
