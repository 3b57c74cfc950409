"""``green_mlops.lightning.EnergyCallback``: the public path of the Lightning adapter (in :mod:`green_mlops.integrations.lightning`)."""
from green_mlops.integrations.lightning import EnergyCallback

__all__ = ["EnergyCallback"]
