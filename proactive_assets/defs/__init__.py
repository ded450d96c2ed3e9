"""Dagster wiring (assets, checks, sensors, schedules, resources): thin, over ``proactive_assets.core``."""
