"""proactive_assets: suspicious identity/IP activity in AWS logs, as day-partitioned Dagster assets."""

__version__ = "0.1.0"
