"""The realistic scenario: an organisation's everyday address churn, with attacks hidden in it.

Benign churn of the kinds that make a first-seen rule noisy (offices and a VPN that moves, home
ISPs, mobile carriers, IPv6 privacy addresses, CI runner pools, Lambda on AWS addresses, NAT'd
servers, a SaaS vendor, weekends, new employees and CI roles, travel) and attacks that use stolen
credentials while their owner works as usual, labelled in ``ground_truth.json``. Same arguments,
same bytes; ``docs/realistic_scenario.md`` describes each category and why it is realistic.
"""

from proactive_assets.samples.realistic.generate import (
    GROUND_TRUTH,
    RealisticSummary,
    generate_realistic_sample,
    history_days_for,
)

__all__ = ["GROUND_TRUTH", "RealisticSummary", "generate_realistic_sample", "history_days_for"]
