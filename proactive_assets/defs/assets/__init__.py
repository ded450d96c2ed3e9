"""The assets, one module per domain; each module builds its assets for a given partitioning."""
