"""Pure logic (no Dagster): storage, parsing, pairs, the IP Insights model, scoring, alerts."""
