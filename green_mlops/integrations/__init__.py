"""Adapters from training frameworks (Lightning, Hugging Face, plain loops) to the metered-run core."""
