"""Hydra config groups (YAML) for every movierec entry point; schemas live in the packages."""
