"""Asset and table names, in one place: the warehouse layout is ``<asset>/day=YYYY-MM-DD/<table>``."""

RAW_CLOUDTRAIL = "raw_cloudtrail"
CLOUDTRAIL_EVENTS = "cloudtrail_events"
SECURITY_LAKE_ACTIVITY = "security_lake_activity"
LEARNING_SET = "learning_set"
TRAINING_SET = "training_set"
IP_INSIGHTS_MODEL = "ip_insights_model"
DAILY_INSIGHTS = "daily_insights"
ALERTS = "alerts"

#: Tables beside an asset's main table (which has the asset's name).
QUARANTINE = "quarantine"
LISTING_PROBLEMS = "listing_problems"
SAGEMAKER_CSV = "learning.csv"

#: The event tables that feed ``learning_set``: one per log source.
EVENT_TABLES = (CLOUDTRAIL_EVENTS, SECURITY_LAKE_ACTIVITY)
