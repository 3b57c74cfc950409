"""Runs of an MLflow experiment as a pandas DataFrame, one row per run, whatever logged them.

Every parameter, metric and tag keeps its own name as a column (``energy/fit_J``, ``batch_size``,
``green_mlops.hw.cpu_model``; a name used twice keeps its ``params.``/``tags.`` prefix), parameters that
are numbers become numbers, and the analysis adds canonical columns so that runs of the Lightning
callback and of ``green-mlops sweep`` read alike:

* ``model`` (the ``arch`` param, else ``model``, else the run name), ``hardware`` (a label built from the
  ``green_mlops.hw.*`` tags; runs are grouped by it), ``provenance`` (measured/estimated and method per
  device), ``accuracy``;
* ``train_energy_J``, ``train_time_s``, ``train_samples`` and the same with ``inference_`` for the test
  (else predict) stage; ``{train,inference}_power_{gpu,cpu,dram}_W`` (mean power per device);
  ``{train,inference}_util`` (mean utilisation, 0–1, of ``*_util_device``: the GPUs where any, else the
  CPUs) and ``*_gpu_mem_util``; ``ram_bytes`` (the host's RAM, as the callback uses it);
* net of idle (Eq. 1–2), over the same windows: ``{train,inference}_net_J``, ``*_net_{gpu,cpu,dram}_J``,
  ``*_net_per_sample_J``; ``idle_{gpu,cpu,dram,total}_W``; per-device gross ``*_energy_{gpu,cpu,dram}_J``
  (names in :mod:`green_mlops.analysis.schema`, row logic in :mod:`green_mlops.analysis.canonical`).

A flat exported runs.csv (:data:`green_mlops.analysis.schema.EXPORT_COLUMNS`) loads like an experiment.

Parent runs (a sweep's study, a GenAI sweep) and report runs are left out, nested runs inheriting the
parameters they lack from their parent; so are runs that did not finish.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.tracking import MlflowClient

from green_mlops import names
from green_mlops.analysis import tracking
from green_mlops.analysis.canonical import ACCURACY_KEYS, INFERENCE_STAGES, canonical, hardware_label
from green_mlops.analysis.errors import FIRST_RUN_HINT, NoEnergyMetrics, NoRuns
from green_mlops.analysis.schema import DOMAINS, from_export, is_export
from green_mlops.redact import redact_uri

__all__ = ["DOMAINS", "hardware_label", "load_csv", "load_epochs", "load_epochs_csv", "load_runs", "normalise",
           "require_energy"]

LOSS_KEYS = ("val_loss", "train_loss_epoch", "train_loss", "loss")
GENAI_ENERGY_KEYS = (names.ENERGY_PER_REQUEST,)  # one row per request-rate level of `green-mlops genai`
_PREFIXES = ("metrics.", "params.", "tags.")


def _split_columns(raw: pd.DataFrame) -> pd.DataFrame:
    """Strip the ``metrics.``/``params.``/``tags.`` prefixes; metrics win a clash, the others keep their prefix.

    green_mlops' namespaced names (``green_mlops/x``, ``green_mlops.x``) become ``x``, filled in from an
    un-namespaced ``x`` where a run has none (runs logged before the namespace existed)."""
    def ours(c: str) -> bool:
        return c.startswith(("metrics.", "params.")) and names.bare(c.split(".", 1)[1]) != c.split(".", 1)[1]

    spaced = [c for c in raw.columns if ours(c)]
    plain = [c for c in raw.columns if c not in spaced]
    renamed: dict[str, str] = {}
    taken = {c.removeprefix("metrics.") for c in plain if c.startswith("metrics.")} | {
        c for c in plain if not c.startswith(_PREFIXES)}
    for c in plain:
        if c.startswith("metrics."):
            renamed[c] = c.removeprefix("metrics.")
        elif c.startswith(_PREFIXES):
            short = c.split(".", 1)[1]
            renamed[c] = c if short in taken else short
            taken.add(renamed[c])
    df = raw[plain].rename(columns=renamed)
    for c in spaced:
        bare = names.bare(c.split(".", 1)[1])
        col = raw[c]
        if c.startswith("params."):
            num = pd.to_numeric(col, errors="coerce")
            col = num if num.notna().sum() == col.notna().sum() else col
        df[bare] = col.combine_first(df[bare]) if bare in df else col
    for c in plain:
        if c.startswith("params."):
            col = renamed[c]
            num = pd.to_numeric(df[col], errors="coerce")
            if num.notna().sum() == df[col].notna().sum():  # every value given is a number
                df[col] = num
    return df


def normalise(raw: pd.DataFrame, details: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """Turn ``mlflow.search_runs`` output (plus per-run ``details`` read from artifacts) into the run table.

    ``details[run_id]`` may hold ``summaries`` ({stage: summary JSON}), ``utilisation`` ({stage: dict}),
    ``train_loop_J`` (sum of ``energy/train_epoch_J``) and ``epoch_J`` ({stage: last epoch energy}).
    """
    details = details or {}
    raw = raw.copy()
    tags = raw[[c for c in raw.columns if c.startswith("tags.")]].rename(columns=lambda c: c.removeprefix("tags."))
    df = _split_columns(raw)
    rows = []
    for i, row in enumerate(df.to_dict("records")):
        rows.append(canonical(row, tags.iloc[i].to_dict() if len(tags.columns) else {},
                               details.get(str(row.get("run_id")), {})))
    canon = pd.DataFrame(rows, index=df.index)
    out = pd.concat([canon, df.drop(columns=[c for c in canon.columns if c in df.columns])], axis=1)
    return out.reset_index(drop=True)


def _run_details(client: MlflowClient, run_id: str, with_traces: bool) -> dict[str, Any]:
    arts = tracking.artifact_names(client, run_id)
    summaries = {s: tracking.read_summary(client, run_id, s) for s in ("fit", *INFERENCE_STAGES)
                 if names.summary_file(s) in arts}
    util = {s: tracking.read_utilisation(client, run_id, s) for s in ("fit", *INFERENCE_STAGES)
            if with_traces and names.trace_file(s) in arts}
    train = tracking.history(client, run_id, names.epoch_energy("train"))
    epoch_J = {}
    for s in INFERENCE_STAGES:
        h = tracking.history(client, run_id, names.epoch_energy(s))
        if len(h):
            epoch_J[s] = float(h["value"].iloc[-1])
    return {"summaries": {k: v for k, v in summaries.items() if v}, "utilisation": util,
            "train_loop_J": float(train["value"].sum()) if len(train) else None, "epoch_J": epoch_J}


def _keep(raw: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Drop report runs and parent runs (sweep studies, GenAI sweeps): their nested runs are the data.

    A nested run first inherits the parameters it lacks from its parent (e.g. the LLM of a GenAI sweep).
    """
    drop = pd.Series(False, index=raw.index)
    col = f"tags.{tracking.ROLE_TAG}"
    if col in raw:
        drop |= raw[col].eq(tracking.REPORT_ROLE)
    parent_col = "tags.mlflow.parentRunId"
    parents = set(raw[parent_col].dropna()) if parent_col in raw else set()
    is_parent = raw["run_id"].isin(parents)
    if f"tags.{tracking.SWEEP_ROLE_TAG}" in raw:
        is_parent |= raw[f"tags.{tracking.SWEEP_ROLE_TAG}"].eq("parent")
    raw = raw.copy()
    if parents:
        by_id = raw.set_index("run_id")
        params = [c for c in raw.columns if c.startswith("params.")]
        for i, pid in raw[parent_col].items():
            if isinstance(pid, str) and pid in by_id.index:
                missing = [c for c in params if pd.isna(raw.at[i, c])]
                raw.loc[i, missing] = by_id.loc[pid, missing].to_numpy()
    notes = [f"{int((is_parent & ~drop).sum())} parent run(s) left out: their nested runs are analysed"] \
        if (is_parent & ~drop).any() else []
    return raw[~(drop | is_parent)], notes


def load_runs(experiment: str, tracking_uri: str | None = None, *, details: bool = True,
              traces: bool = True) -> pd.DataFrame:
    """The experiment's finished runs with energy, one row each (see the module docstring for the columns).

    ``details`` reads what the callback left as artifacts (per-device energy, provenance, sample counts);
    ``traces`` also reads the power traces for mean utilisation. Raises :class:`ExperimentNotFound`,
    :class:`NoRuns` or :class:`NoEnergyMetrics` with what to run first. ``df.attrs["notes"]`` lists runs
    left out and why.
    """
    client = MlflowClient(tracking_uri)
    exp = tracking.find_experiment(client, experiment)
    raw, notes = _keep(tracking.search_runs(exp.experiment_id, client.tracking_uri))
    if raw.empty:
        raise NoRuns(f"experiment {experiment!r} at {redact_uri(client.tracking_uri)} has no finished runs to analyse; "
                     f"{FIRST_RUN_HINT}")
    det = {rid: _run_details(client, rid, traces) for rid in raw["run_id"]} if details else {}
    df = normalise(raw, det)
    df.attrs["notes"] = notes
    df.attrs["experiment"] = experiment
    df.attrs["tracking_uri"] = client.tracking_uri
    return require_energy(df, f"experiment {experiment!r}")


def require_energy(df: pd.DataFrame, where: str) -> pd.DataFrame:
    """Keep runs with a training or inference energy, or a GenAI energy per request; none at all is an
    error saying what to run."""
    has = pd.Series(False, index=df.index)
    for key in ("train_energy_J", "inference_energy_J"):  # a table from elsewhere may have neither column
        if key in df:
            has |= df[key].notna()
    for genai in GENAI_ENERGY_KEYS:
        if genai in df:
            has |= pd.to_numeric(df[genai], errors="coerce").notna()
    if not has.any():
        raise NoEnergyMetrics(
            f"{where} has {len(df)} finished run(s) but none with energy metrics (energy/fit_J or energy/test_J "
            "from green_mlops.lightning.EnergyCallback, energy/training_J from green-mlops sweep, or "
            f"energy_per_request_J from green-mlops genai); {FIRST_RUN_HINT}")
    kept = df[has].reset_index(drop=True)
    kept.attrs = dict(df.attrs)
    notes = list(df.attrs.get("notes", []))
    if (~has).sum():
        missing = ", ".join(str(n) for n in df.loc[~has, "run_name"].head(5))
        notes.append(f"{int((~has).sum())} finished run(s) without energy metrics left out ({missing})")
    kept.attrs["notes"] = notes
    return kept


def load_epochs(runs: pd.DataFrame, tracking_uri: str | None = None) -> pd.DataFrame:
    """Per-epoch loss, accuracy and energy of each run: columns ``run_id``, ``model``, ``hardware``,
    ``epoch`` (1-based), ``loss``, ``accuracy``, ``energy_J`` (train + validation of that epoch) and
    ``cumulative_energy_J``. Epoch k is the k-th ``energy/train_epoch_J``; loss and accuracy are the last
    values logged at or before that epoch's step."""
    client = MlflowClient(tracking_uri or runs.attrs.get("tracking_uri"))
    frames = []
    for r in runs[["run_id", "model", "hardware"]].to_dict("records"):
        train = tracking.history(client, r["run_id"], names.epoch_energy("train"))
        if train.empty:
            continue
        ep = pd.DataFrame({"step": train["step"], "epoch": range(1, len(train) + 1), "train_J": train["value"]})
        val = tracking.history(client, r["run_id"], names.epoch_energy("val"))
        ep["val_J"] = _asof(ep, val)
        for col, keys in (("loss", LOSS_KEYS), ("accuracy", ACCURACY_KEYS)):
            ep[col] = next((v for v in (_asof(ep, tracking.history(client, r["run_id"], k)) for k in keys)
                            if v.notna().any()), float("nan"))
        ep["energy_J"] = ep["train_J"] + ep["val_J"].fillna(0.0)
        ep["cumulative_energy_J"] = ep["energy_J"].cumsum()
        frames.append(ep.assign(**r).drop(columns=["step"]))
    cols = ["run_id", "model", "hardware", "epoch", "loss", "accuracy", "train_J", "val_J", "energy_J",
            "cumulative_energy_J"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def _asof(epochs: pd.DataFrame, hist: pd.DataFrame) -> pd.Series:
    """For each epoch's step, the last value of ``hist`` logged at or before it (NaN when none)."""
    if hist.empty:
        return pd.Series(float("nan"), index=epochs.index)
    merged = pd.merge_asof(epochs[["step"]].astype("int64"), hist[["step", "value"]].astype({"step": "int64"})
                           .drop_duplicates("step", keep="last"), on="step", direction="backward")
    return pd.Series(merged["value"].to_numpy(), index=epochs.index)


def load_csv(path: str | Path) -> pd.DataFrame:
    """Runs saved by ``green-mlops report`` (``runs.csv``) or exported from ``mlflow.search_runs``.

    ``path`` may be the CSV or a folder holding ``runs.csv``.
    """
    p = Path(path)
    p = p / "runs.csv" if p.is_dir() else p
    if not p.is_file():
        raise NoRuns(f"no runs table at {p}: write one with `green-mlops report --experiment NAME --output DIR`")
    try:
        df = pd.read_csv(p)
    except (ValueError, OSError) as exc:  # not CSV at all: empty, binary, ragged
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NoRuns(f"{p} is not a runs table ({why}); give a runs.csv written by `green-mlops report`") from None
    if is_export(df):
        df = normalise(from_export(df))
    elif any(c.startswith(_PREFIXES) for c in df.columns) and "train_energy_J" not in df:
        df = normalise(df)
    df.attrs["source"] = str(p)
    return require_energy(df, str(p))


def load_epochs_csv(path: str | Path) -> pd.DataFrame:
    """Per-epoch rows saved beside ``runs.csv`` by ``green-mlops report`` (empty when there are none)."""
    p = Path(path)
    p = p / "epochs.csv" if p.is_dir() else p.with_name("epochs.csv")
    return pd.read_csv(p) if p.is_file() else pd.DataFrame(
        columns=["run_id", "model", "hardware", "epoch", "loss", "accuracy", "train_J", "val_J", "energy_J",
                 "cumulative_energy_J"])
