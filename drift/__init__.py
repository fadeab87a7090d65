"""Drift detection (alibi-detect) over the lake and over KServe payloads, and the retrain
trigger. Entry point: ``python -m drift`` (batch job) / ``python -m drift online``."""
