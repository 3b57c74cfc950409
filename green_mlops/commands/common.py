"""What several commands share: Lightning's banners and tips kept quiet (warnings still show)."""
from __future__ import annotations

import logging
import warnings


def quiet_lightning() -> None:
    """Per-run Lightning banners and tips would bury a command's own output; keep warnings only."""
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*log_every_n_steps.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
