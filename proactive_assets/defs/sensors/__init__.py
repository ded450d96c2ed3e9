"""Event-driven runs, one module per source: new CloudTrail objects, Security Lake notifications."""

from dagster import DailyPartitionsDefinition, SensorDefinition

from proactive_assets.defs.sensors.cloudtrail import cloudtrail_s3_sensor
from proactive_assets.defs.sensors.security_lake import make_security_lake_sqs_sensor


def sensors(partitions: DailyPartitionsDefinition) -> list[SensorDefinition]:
    return [cloudtrail_s3_sensor(partitions), make_security_lake_sqs_sensor(partitions)]
