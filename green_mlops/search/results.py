"""A sweep's trials as rows for the ranking: every trial, pruned and deferred ones too, with what each spent."""
from __future__ import annotations

from typing import Any

import optuna

from green_mlops.search.cost import SPENT_ATTR
from green_mlops.search.predict import DEFERRED_ATTR
from green_mlops.search.pruning import VERDICT_ATTR
from green_mlops.search.tracking import RUN_ATTR


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One dict per trial (see :data:`green_mlops.search.ranking.COLUMNS`); deferred points have state DEFERRED."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        feasible = all(v <= 0 for v in t.constraints.values())
        deferred = a.get(DEFERRED_ATTR)
        params = dict(t.params) or {k.removeprefix("point_"): v for k, v in a.items() if k.startswith("point_")}
        note = "; ".join(a.get("notes") or []) or a.get("error", "")
        if a.get(VERDICT_ATTR):
            note = a[VERDICT_ATTR].get("note", "pruned")
        if deferred:
            note = (f"deferred untrained: predicted {deferred['predicted_lifecycle_J']:.4g} J lifecycle, best case "
                    f"accuracy {deferred['best_case_accuracy']:.4f}; trial {deferred['dominated_by']} has "
                    f"{deferred['dominator_accuracy']:.4f} for {deferred['dominator_lifecycle_J']:.4g} J")
        rows.append({"trial": t.number, "state": "DEFERRED" if deferred else t.state.name, "feasible": feasible,
                     **params, "accuracy": a.get("accuracy"), "training_J": a.get("training_J"),
                     "inference_J_per_sample": a.get("inference_J_per_sample"),
                     "inference_J": a.get("inference_J"), "lifecycle_J": a.get("lifecycle_J"),
                     "spent_J": 0.0 if deferred else a.get(SPENT_ATTR),
                     "predicted_lifecycle_J": deferred.get("predicted_lifecycle_J") if deferred else None,
                     "duration_s": a.get("duration_s"), "predicted_training_J":
                         deferred.get("predicted_training_J") if deferred else a.get("predicted_training_J"),
                     "note": note, "mlflow_run_id": a.get(RUN_ATTR, "")})
    return rows
