"""The paper's analysis of logged runs: metrics, correlations, energy prediction, figures and a report.

    runs = load_runs("my-sweep")                       # one row per MLflow run
    basis = choose_basis(runs)                         # net of idle when every run has it, else gross
    table3 = paper_metrics(runs, "inference", basis)   # the paper's metrics per run
    corr = correlations(pd.concat([table3, runs[["hardware", basis.energy("inference")]]], axis=1),
                        basis.energy("inference"), PAPER_METRICS)
    predictor = EnergyPredictor.fit(runs, target=basis.per_sample("train"))   # Lasso, cross-validated
    write_report("my-sweep", "report_dir")             # what `green-mlops report` does
"""
from green_mlops.analysis.analyse import Analysis, analyse
from green_mlops.analysis.basis import Basis, choose_basis
from green_mlops.analysis.correlation import Correlations, correlations
from green_mlops.analysis.errors import (
    AnalysisError,
    ExperimentNotFound,
    MissingData,
    NoEnergyMetrics,
    NoRuns,
    TooFewRuns,
)
from green_mlops.analysis.findings import Finding, check_findings
from green_mlops.analysis.paper_metrics import paper_metrics
from green_mlops.analysis.regression import EnergyPredictor
from green_mlops.analysis.report import Report, write_report
from green_mlops.analysis.runs import load_csv, load_epochs, load_epochs_csv, load_runs
from green_mlops.genai_metrics import GENAI_METRICS, genai_metrics

__all__ = [
    "GENAI_METRICS", "Analysis", "AnalysisError", "Basis", "Correlations", "EnergyPredictor", "ExperimentNotFound",
    "Finding", "MissingData", "NoEnergyMetrics", "NoRuns", "Report", "TooFewRuns", "analyse", "check_findings",
    "choose_basis", "correlations", "genai_metrics", "load_csv", "load_epochs", "load_epochs_csv", "load_runs", "paper_metrics",
    "write_report",
]
