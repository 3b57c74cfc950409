"""The analysis as a self-contained HTML page (figures inlined as base64 PNG) or as Markdown."""
from __future__ import annotations

import base64
import datetime as dt
import html
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from green_mlops import names
from green_mlops.analysis.analyse import TARGETS, Analysis
from green_mlops.analysis.correlation import Correlations
from green_mlops.analysis.figures import png
from green_mlops.analysis.regression import EnergyPredictor

__all__ = ["energy_statement", "render_html", "render_markdown", "report_meta", "sections"]

RUN_COLUMNS = {"model": "model", "batch_size": "batch size", "hardware": "hardware", "accuracy": "accuracy",
               "repeat": "repeat", "train_energy_J": "training J (gross)", "train_net_J": "training J (net)",
               "train_time_s": "training s", names.ENERGY_PER_SAMPLE_TRAIN: "J/sample (train, gross)",
               "train_net_per_sample_J": "J/sample (train, net)", "inference_energy_J": "inference J (gross)",
               "inference_net_J": "inference J (net)", names.ENERGY_PER_SAMPLE_INFERENCE: "J/sample (inference, gross)",
               "inference_net_per_sample_J": "J/sample (inference, net)", "idle_total_W": "idle W",
               "request_rate": "requests/s", names.ENERGY_PER_REQUEST: "J/request",
               names.ENERGY_PER_OUTPUT_TOKEN: "J/output token",
               "provenance": "energy provenance (per device: measured/estimated, method)"}
HW_TAGS = ["cpu_model", "cpu_count", "ram_gb", "gpu_count", "gpu_names", "gpu_driver", "virtual_machine", "os"]


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        f = float(v)
        if f.is_integer() and abs(f) < 1e15:
            return f"{int(f):,}"
        return f"{f:.4g}" if 1e-3 <= abs(f) < 1e6 else f"{f:.3e}"
    return str(v)


def _hardware_table(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for hw, g in runs.groupby("hardware", sort=True):
        row: dict[str, Any] = {"hardware": hw, "runs": len(g)}
        for t in HW_TAGS:
            col = names.hw_tag(t)
            row[t.replace("_", " ")] = ", ".join(sorted({str(v) for v in g[col].dropna()})) if col in g else "–"
        row["energy provenance"] = " | ".join(sorted(set(g["provenance"].astype(str))))
        rows.append(row)
    return pd.DataFrame(rows)


def _runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in RUN_COLUMNS if c in runs and runs[c].notna().any()]
    sort = [c for c in ("hardware", "model", "batch_size", "request_rate") if c in cols]
    return runs[cols].sort_values(sort).reset_index(drop=True).rename(columns=RUN_COLUMNS)


def _findings_table(a: Analysis) -> pd.DataFrame:
    return pd.DataFrame([{"finding": f.claim, "paper": f.paper, "these runs (95 % interval)": f.here,
                          "agrees when": f.region, "verdict": f.verdict, "why": f.why} for f in a.findings])


def energy_statement(a: Analysis) -> str:
    """Which energy the report uses, and why (printed by the CLI too)."""
    return f"Energy: {a.basis.label}. {a.basis.why[:1].upper() + a.basis.why[1:]}." if a.basis.why else \
        f"Energy: {a.basis.label}."


METHOD = ("Each number quoted with an interval carries a bootstrap 95 % interval (scipy.stats.bootstrap, percentile, "
          "2000 resamples, fixed seed). The unit resampled is the configuration (hardware × model × batch size): repeats "
          "are averaged first, so n counts configurations. The best batch size resamples the repeats within each batch "
          "size. A verdict comes from the interval against the region where the paper's claim holds: agrees (all of it "
          "inside), differs (all outside), cannot tell (it straddles a boundary), too few runs (no interval: fewer than "
          "5 configurations, or fewer than 3 repeats per batch size), by construction (a relation that holds because "
          "of how the numbers were made, e.g. a device estimated at constant power is linear in time).")


def sections(a: Analysis) -> list[tuple[str, list[Any]]]:
    """The report as (heading, blocks); a block is a sentence, a DataFrame or a Figure (with its caption)."""
    runs = a.runs
    out: list[tuple[str, list[Any]]] = []
    out.append(("Hardware and provenance", [
        "Each hardware configuration (from the runs' green_mlops.hw.* tags) and how its energy was obtained. "
        "Measured: read from a hardware counter (NVML, RAPL). Estimated: computed by a model (e.g. TDP × "
        "utilisation) and only as good as that model. Every energy below, and every metric derived from it, "
        "carries the provenance of its run.", _hardware_table(runs)]))
    out.append(("Runs", [_runs_table(runs)]))
    out.append(("The paper's findings on these runs", [energy_statement(a), METHOD, _findings_table(a)]))
    for phase, label in TARGETS.items():
        c = a.correlations.get(phase)
        blocks: list[Any] = []
        if isinstance(c, Correlations):
            blocks += [f"Spearman ρ [95 % interval] of each metric (computed over the {phase} window) with {label}, "
                       f"{a.basis.short} ({c.target}), per hardware configuration:", c.wide_text("spearman_rho"),
                       "Pearson r [95 % interval]:", c.wide_text("pearson_r")]
            blocks += [f"Note: {n}" for n in c.notes]
        else:
            blocks.append(f"Not computed: {c}.")
        out.append((f"Correlation with {label}", blocks))
    if "genai" in a.correlations:
        c = a.correlations["genai"]
        out.append(("GenAI metrics (Table 6)", [c.wide_text("spearman_rho")] if isinstance(c, Correlations)
                    else [f"Not computed: {c}."]))
    p = a.predictor
    if isinstance(p, EnergyPredictor):
        imp = p.summary.importances[p.summary.importances > 0].rename("importance").rename_axis("feature").to_frame()
        out.append(("Predicting energy without a meter (Lasso, paper §7)", [
            p.describe() + " Saved as energy_predictor.joblib: EnergyPredictor.load(path).predict(config) "
            "estimates it for a configuration that was never run.", imp, *[f"Note: {n}" for n in p.summary.notes]]))
    else:
        out.append(("Predicting energy without a meter (Lasso, paper §7)", [f"Not fitted: {p}."]))
    if not a.batch_sizes.empty:
        out.append(("Energy-minimising batch size", [
            f"Batch size with the least {a.basis.short} energy per training sample, per model and hardware, with its 95 % "
            "interval over resamples of the repeats at each size; where energy levels off (the smallest size within "
            "10 % of the minimum), and the verdict.", a.batch_sizes]))
    if not a.searches.empty:
        out.append(("What the search cost", [
            "Energy drawn by every trial each sweep started (complete, pruned, failed: fit plus the inference "
            "measured), beside the lifecycle energy of the front it found; deferred points were never trained.",
            a.searches]))
    if not a.deferrals.empty:
        out.append(("Points deferred by the energy predictor", [
            "Untried points the Lasso predicted dominated: a finished trial more accurate than the point's best case "
            "for at most its predicted energy / (1 + margin). Rerun one in a new study to check the prediction.",
            a.deferrals]))
    out.append(("Figures", [(name, fig, a.captions.get(name, name)) for name, fig in a.figures.items()]))
    if a.notes:
        out.append(("Notes", list(a.notes)))
    return out


def _render(a: Analysis, *, text: Callable[[str], str], table: Callable[[pd.DataFrame], str],
            figure: Callable[[str, Figure, str], str], heading: Callable[[str], str]) -> list[str]:
    parts = []
    for title, blocks in sections(a):
        parts.append(heading(title))
        for b in blocks:
            if isinstance(b, pd.DataFrame):
                parts.append(table(b))
            elif isinstance(b, tuple):
                name, fig, caption = b
                parts.append(figure(name, fig, caption) if isinstance(fig, Figure)
                             else text(f"{name}: not drawn: {fig}"))
            else:
                parts.append(text(str(b)))
    return parts


CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee}figcaption{font-size:13px;color:#555}.meta{color:#555}"""


def render_html(a: Analysis, title: str, meta: dict[str, str]) -> str:
    """One HTML file with everything inlined: opens offline, attaches to an MLflow run as is."""
    def table(df: pd.DataFrame) -> str:
        show = df.copy()
        show.index = [_fmt(i) for i in show.index]
        return show.apply(lambda col: col.map(_fmt)).to_html(escape=True, index=not isinstance(df.index, pd.RangeIndex), border=0)

    def figure(name: str, fig: Figure, caption: str) -> str:
        data = base64.b64encode(png(fig)).decode()
        return (f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
                f"<figcaption><b>{html.escape(name)}.</b> {html.escape(caption)}</figcaption></figure>")

    body = _render(a, text=lambda s: f"<p>{html.escape(s)}</p>", table=table, figure=figure,
                   heading=lambda s: f"<h2>{html.escape(s)}</h2>")
    info = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in meta.items())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1><ul class='meta'>{info}</ul>"
            + "\n".join(body) + "</body></html>\n")


def _md_table(df: pd.DataFrame) -> str:
    show = df if isinstance(df.index, pd.RangeIndex) else df.reset_index()
    cells = [[_fmt(v).replace("|", "\\|").replace("\n", " ") for v in row] for row in show.itertuples(index=False)]
    head = [str(c).replace("|", "\\|") for c in show.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])


def render_markdown(a: Analysis, title: str, meta: dict[str, str], figure_dir: Path) -> str:
    """Markdown for a pull request; figures are written as PNG files into ``figure_dir`` and linked."""
    figure_dir.mkdir(parents=True, exist_ok=True)

    def figure(name: str, fig: Figure, caption: str) -> str:
        slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:60] + ".png"
        (figure_dir / slug).write_bytes(png(fig))
        return f"![{name}]({figure_dir.name}/{slug})\n\n*{name}.* {caption}"

    body = _render(a, text=lambda s: s, table=_md_table, figure=figure, heading=lambda s: f"## {s}")
    info = "\n".join(f"- {k}: {v}" for k, v in meta.items())
    return f"# {title}\n\n{info}\n\n" + "\n\n".join(body) + "\n"


def report_meta(runs: pd.DataFrame, source: str, basis_label: str | None = None) -> dict[str, str]:
    """The lines under the title: where the runs came from, how many, which energy, when."""
    return {"runs from": source, "runs analysed": str(len(runs)),
            **({"energy": basis_label} if basis_label else {}),
            "hardware configurations": str(runs["hardware"].nunique()),
            "written": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
