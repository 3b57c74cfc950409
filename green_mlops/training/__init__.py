"""Training with the paper's set-up: the Lightning module and config (train), data sets (data), the model zoo (zoo)."""
