"""A synthetic CloudTrail bucket with known suspicious activity and a ``ground_truth.json`` of labels.

Same arguments, same bytes; ``docs/sample_data.md`` describes what the sample holds and why.
"""

from proactive_assets.samples.cloudtrail.catalog import BUCKET
from proactive_assets.samples.cloudtrail.generate import GROUND_TRUTH, SampleSummary, generate_sample

__all__ = ["BUCKET", "GROUND_TRUTH", "SampleSummary", "generate_sample"]
