"""``green_mlops.transformers.EnergyCallback``: the public path of the Hugging Face adapter (:mod:`green_mlops.integrations.transformers`)."""
from green_mlops.integrations.transformers import EnergyCallback

__all__ = ["EnergyCallback"]
