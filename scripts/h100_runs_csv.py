"""Turn the H100 zoo CSVs (benchmarks/zoo_h100.py) into the runs.csv that ``green-mlops report --runs`` reads.

The zoo CSVs are ``mlflow.search_runs`` output with short column names; this undoes that renaming (the
inverse of ``COLUMNS`` in benchmarks/zoo_h100.py) and adds what the export left out but the analysis needs:
the sample counts of the benchmark (50k training, 50k inference), its dataset (synthetic), the machine's ``green_mlops.hw.*`` tags
and the provenance of each device's energy. The loader then derives every other column with its own
definitions, so the committed file and a live MLflow experiment are analysed alike.

    python scripts/h100_runs_csv.py                      # writes results/h100/runs.csv
    python scripts/h100_runs_csv.py --batch-size 128 --output /tmp/b128/runs.csv   # the paper's Table 3 set-up
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pandas as pd

from green_mlops import names
from green_mlops.analysis.schema import METHOD_PROVENANCE

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "h100"
SOURCES = ("zoo_archs_b128.csv", "zoo_batches.csv")
#: The lent H100 machine the zoo ran on (benchmarks/zoo_h100.py; results/h100/anchors/anchors.md). RAM is
#: what the runs' model_size_to_ram implies: model_size_bytes / model_size_to_ram = 135.1 GB.
HARDWARE = {"cpu_model": "Intel(R) Xeon(R) Processor", "cpu_count": "16", "ram_gb": "135.1", "gpu_count": "1",
            "gpu_driver": "580.159.04", "virtual_machine": "true"}
#: Whether each metering method measures or estimates: the runs schema's one definition.
PROVENANCE = METHOD_PROVENANCE


def _export_columns() -> dict[str, str]:
    """``COLUMNS`` of benchmarks/zoo_h100.py (MLflow name -> zoo CSV name): one definition of the mapping."""
    spec = importlib.util.spec_from_file_location("zoo_h100", ROOT / "benchmarks" / "zoo_h100.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.COLUMNS)


def runs_table(zoo: pd.DataFrame, samples: int) -> pd.DataFrame:
    """The zoo rows as ``mlflow.search_runs`` rows: prefixed columns, sample counts, hardware and method tags."""
    back = {short: name for name, short in _export_columns().items()}
    unknown = [c for c in zoo.columns if c not in back]
    if unknown:
        raise SystemExit(f"columns {unknown} are not in benchmarks/zoo_h100.py COLUMNS: export the CSV with that script")
    out = zoo.rename(columns=back)
    for domain in ("gpu", "cpu", "dram"):
        methods = out[f"tags.{names.method_tag(domain)}"]
        missing = sorted(set(methods) - set(PROVENANCE))
        if missing:
            raise SystemExit(f"unknown {domain} method(s) {missing}: add them to PROVENANCE in {Path(__file__).name}")
        out[f"tags.{names.provenance_tag(domain)}"] = methods.map(PROVENANCE)
    for key, value in HARDWARE.items():
        out[f"tags.{names.hw_tag(key)}"] = value
    out["params.dataset"] = "synthetic"  # zoo_h100.py sweeps --dataset synthetic: random labels, accuracy meaningless
    out[f"metrics.{names.samples('train')}"] = samples
    out[f"metrics.{names.samples('predict')}"] = samples
    out.insert(0, "tags.mlflow.runName", zoo["arch"] + " bs" + zoo["batch_size"].astype(str))
    out.insert(0, "run_id", [f"h100-{a}-bs{b}" for a, b in zip(zoo["arch"], zoo["batch_size"], strict=True)])
    out.insert(1, "status", "FINISHED")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=RESULTS, help="folder holding the zoo CSVs (default: %(default)s)")
    p.add_argument("--output", type=Path, default=RESULTS / "runs.csv", help="runs.csv to write (default: %(default)s)")
    p.add_argument("--samples", type=int, default=50_000,
                   help="training and inference samples per trial (zoo_h100.py --samples; default %(default)s)")
    p.add_argument("--batch-size", type=int, default=None, help="keep only runs at this batch size")
    args = p.parse_args()
    missing = [f for f in SOURCES if not (args.results / f).is_file()]
    if missing:
        raise SystemExit(f"{', '.join(missing)} not found in {args.results}: run benchmarks/zoo_h100.py --part csv")
    zoo = pd.concat([pd.read_csv(args.results / f) for f in SOURCES], ignore_index=True)
    zoo = zoo.drop_duplicates(["arch", "batch_size"]).sort_values(["arch", "batch_size"], ignore_index=True)
    if args.batch_size is not None:
        zoo = zoo[zoo["batch_size"] == args.batch_size].reset_index(drop=True)
        if zoo.empty:
            raise SystemExit(f"no run at batch size {args.batch_size} in {args.results}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    runs_table(zoo, args.samples).to_csv(args.output, index=False)
    print(f"{args.output}: {len(zoo)} runs ({zoo['arch'].nunique()} architectures, batch sizes "
          f"{', '.join(str(b) for b in sorted(zoo['batch_size'].unique()))})")


if __name__ == "__main__":
    main()
