"""The metered-run core: one object per metered run, its step stream, artifacts and plots."""
