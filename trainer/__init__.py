"""The trainer: lake snapshot → interactions → candidates → leakage-safe evaluation → report →
registry (``python -m trainer``)."""
