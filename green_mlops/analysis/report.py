"""``green-mlops report``: load an experiment's runs, analyse them, write the report and its data, and
log them to the experiment as artifacts of a run named "report"."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from green_mlops.analysis import tracking
from green_mlops.analysis.analyse import Analysis, analyse
from green_mlops.analysis.correlation import Correlations
from green_mlops.analysis.regression import EnergyPredictor
from green_mlops.analysis.render import render_html, render_markdown, report_meta
from green_mlops.analysis.runs import load_csv, load_epochs, load_epochs_csv, load_runs
from green_mlops.analysis.searches import load_searches
from green_mlops.redact import redact_uri

__all__ = ["FORMATS", "Report", "write_report"]

FORMATS = ("html", "md")


@dataclass
class Report:
    """Where the report went: the main file, the data beside it, and the MLflow run holding them."""

    path: Path
    files: list[Path]
    analysis: Analysis
    run_id: str | None = None


def _write_data(a: Analysis, out: Path) -> list[Path]:
    """runs.csv and epochs.csv (reloadable with load_csv), the findings with their verdicts, the correlation
    tables with their intervals and the predictor."""
    files = [out / "runs.csv", out / "epochs.csv"]
    a.runs.to_csv(files[0], index=False)
    a.epochs.to_csv(files[1], index=False)
    files.append(out / "findings.csv")
    pd.DataFrame([vars(f) for f in a.findings]).to_csv(files[-1], index=False)
    corr = [c.table.assign(target=c.target) for c in a.correlations.values() if isinstance(c, Correlations)]
    if corr:
        files.append(out / "correlations.csv")
        pd.concat(corr, ignore_index=True).to_csv(files[-1], index=False)
    for name, df in (("searches.csv", a.searches), ("deferrals.csv", a.deferrals)):
        if not df.empty:
            files.append(out / name)
            df.to_csv(files[-1], index=False)
    if isinstance(a.predictor, EnergyPredictor):
        files.append(a.predictor.save(out / "energy_predictor.joblib"))
    return files


def write_report(experiment: str | None = None, output: str | Path = "green_mlops_report", fmt: str = "html",
                 tracking_uri: str | None = None, *, runs_csv: str | Path | None = None, log: bool = True,
                 traces: bool = True) -> Report:
    """Analyse ``experiment`` (or a saved ``runs_csv``) and write ``report.html``/``report.md`` into ``output``.

    With ``log`` the report and its data are logged to the experiment, on a new finished run named
    "report" (tagged so later reports leave it out). Bad input raises an :class:`AnalysisError`
    subclass before anything is written.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if (experiment is None) == (runs_csv is None):
        raise ValueError("give an experiment name or a runs.csv, not both and not neither")
    if runs_csv is not None:
        runs, epochs, source = load_csv(runs_csv), load_epochs_csv(runs_csv), str(runs_csv)
    else:
        runs = load_runs(experiment, tracking_uri, traces=traces)
        epochs = load_epochs(runs)
        source = f"MLflow experiment {experiment!r} at {redact_uri(runs.attrs['tracking_uri'])}"
    a = analyse(runs, epochs)
    if experiment is not None:
        client = MlflowClient(runs.attrs["tracking_uri"])
        a.searches, a.deferrals = load_searches(client, tracking.find_experiment(client, experiment).experiment_id)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    title = f"Energy report: {experiment or Path(runs_csv).name}"  # type: ignore[arg-type]
    meta = report_meta(runs, source, a.basis.label)
    path = out / f"report.{fmt}"
    if fmt == "html":
        path.write_text(render_html(a, title, meta), encoding="utf-8")
        files = [path]
    else:
        path.write_text(render_markdown(a, title, meta, out / "figures"), encoding="utf-8")
        files = [path, *sorted((out / "figures").glob("*.png"))]
    files += _write_data(a, out)
    report = Report(path, files, a)
    if log and experiment is not None:
        client = MlflowClient(runs.attrs["tracking_uri"])
        exp = tracking.find_experiment(client, experiment)
        report.run_id = tracking.log_report(client, exp.experiment_id, files,
                                            {"format": fmt, "runs_analysed": len(runs), "energy": a.basis.short})
    return report
