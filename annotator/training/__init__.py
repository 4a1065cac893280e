"""Retraining: model versions and the training runs that produce them, their data, the
evaluation gate and promotion, schedules and thresholds, and which model a project uses (loaded
once per process)."""
