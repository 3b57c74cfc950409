"""Energy budget for one trial: profile the first steps, predict the whole run, stop when it won't fit.

Energy is linear in steps (the paper's §6.1.2, r ≈ 0.99), so cumulative energy after the profile steps,
scaled to the planned number of steps, predicts the run's training energy. The prediction is refreshed as
steps go by; once it exceeds the budget the trainer stops, and the trial is marked infeasible.
"""
from __future__ import annotations

import math
import time
from typing import Any

from green_mlops.argtypes import check_number, check_seconds, check_whole
from green_mlops.integrations.lightning_base import CALLBACK_BASES


class EnergyBudget(*CALLBACK_BASES):  # type: ignore[misc]
    """Stop training when predicted training energy exceeds ``budget_J``.

    Checked first after ``profile_steps`` steps, then at most every ``check_every_s`` seconds (each check
    integrates the meter's trace so far, a millisecond or so, off the per-step path).
    """

    def __init__(self, budget_J: float, profile_steps: int = 20, check_every_s: float = 1.0) -> None:
        self.budget_J = check_number("energy budget in joules", budget_J, positive=True, example="5000")
        check_whole("profile steps", profile_steps, 1)
        self.profile_steps = profile_steps
        self.check_every_s = check_seconds("check_every_s", check_every_s, positive=True, example="1")
        self._last_check = -math.inf
        self.predicted_J: float | None = None
        self.stopped_at_step: int | None = None
        self._energy: Any = None  # the EnergyCallback (found by what it offers: energy_so_far)
        self._planned_steps: int | None = None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        found = [cb for cb in trainer.callbacks if callable(getattr(cb, "energy_so_far", None))]
        if not found:
            raise RuntimeError("EnergyBudget needs an EnergyCallback in the same Trainer to read energy from")
        self._energy = found[0]
        planned = trainer.estimated_stepping_batches
        self._planned_steps = int(planned) if math.isfinite(planned) else None

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step < self.profile_steps or self._energy is None:
            return
        now = time.monotonic()
        if step > self.profile_steps and now - self._last_check < self.check_every_s:
            return
        self._last_check = now
        spent = self._energy.energy_so_far()
        if spent is None:
            return
        planned = self._planned_steps or step
        self.predicted_J = max(spent, spent / step * planned)
        if self.predicted_J > self.budget_J:
            self.stopped_at_step = step
            trainer.should_stop = True

    @property
    def over_budget(self) -> bool:
        """True when the run was stopped because its predicted energy exceeded the budget."""
        return self.stopped_at_step is not None
