"""The realistic scenario: reproducible, readable by the pipeline, and its churn and attacks as labelled."""

import datetime as dt
import hashlib
import ipaddress
import itertools
import json
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from proactive_assets.core.sources import cloudtrail
from proactive_assets.core.storage import LocalStore
from proactive_assets.samples.cloudtrail.seeded import HashedNames
from proactive_assets.samples.realistic import GROUND_TRUTH, RealisticSummary, generate_realistic_sample
from proactive_assets.samples.realistic.address_plan import AWS_EC2_RANGES, network_owner
from proactive_assets.samples.realistic.attacks import ATTACK_CATEGORIES, AttackPlan
from proactive_assets.samples.realistic.behaviour import BENIGN_CATEGORIES, DayBuilder
from proactive_assets.samples.realistic.ledger import network_keys
from proactive_assets.samples.realistic.population import build_organisation

START = dt.date(2024, 6, 3)  # a Monday: days 5 and 6 are a weekend
DAYS = 10  # 7 days of history, 3 test days
SEED = 5
SCALE = 0.5

Pair = tuple[str, str, str]  # day, entity, source_ip


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RealisticSummary]:
    out = tmp_path_factory.mktemp("realistic")
    return out, generate_realistic_sample(out, START, days=DAYS, seed=SEED, scale=SCALE)


@pytest.fixture(scope="module")
def truth(sample: tuple[Path, RealisticSummary]) -> dict:
    return json.loads((sample[0] / GROUND_TRUTH).read_text())


@pytest.fixture(scope="module")
def parsed(sample: tuple[Path, RealisticSummary]) -> tuple[dict[str, set[tuple[str, str]]], list, int]:
    """Every day's (entity, address) pairs as the pipeline's CloudTrail reader sees them, its problems, events."""
    store = LocalStore(sample[0])
    pairs: dict[str, set[tuple[str, str]]] = defaultdict(set)
    problems: list = []
    events = 0
    for offset in range(DAYS):
        day = START + dt.timedelta(days=offset)
        listing = cloudtrail.list_day(store, day)
        problems += listing.problems
        for batch in cloudtrail.read(store, listing.objects):
            problems += batch.problems
            events += batch.events.num_rows
            table = batch.events.filter(pc.equal(batch.events.column("is_pair"), pa.scalar(True)))
            pairs[day.isoformat()].update(
                zip(table.column("identity_arn").to_pylist(), table.column("source_ip").to_pylist(), strict=True)
            )
    return pairs, problems, events


def test_same_seed_same_bytes_other_seed_other_population(tmp_path: Path) -> None:
    first = generate_realistic_sample(tmp_path / "a", START, days=3, seed=3, scale=0.15)
    again = generate_realistic_sample(tmp_path / "b", START, days=3, seed=3, scale=0.15)
    assert _tree_hash(tmp_path / "a") == _tree_hash(tmp_path / "b")
    assert (first.events, first.log_files) == (again.events, again.log_files)
    other = generate_realistic_sample(tmp_path / "c", START, days=3, seed=4, scale=0.15)
    assert _tree_hash(tmp_path / "c") != _tree_hash(tmp_path / "a")
    people = {json.dumps(e["entity"]) for e in json.loads(first.ground_truth.read_text())["benign_novelties"]}
    others = {json.dumps(e["entity"]) for e in json.loads(other.ground_truth.read_text())["benign_novelties"]}
    assert other.accounts != first.accounts and people != others


def test_attack_placement_depends_on_the_seed() -> None:
    placements = []
    for seed in (21, 22):
        org = build_organisation(seed, HashedNames(seed), START, 28, 14, 0.1)
        plan = AttackPlan(org, DayBuilder(org, HashedNames(seed), START), seed, START, 28, 14)
        placements.append(sorted((day, c) for day, categories in plan.pending.items() for c in categories))
        assert {d for d, _ in placements[-1]} <= set(range(14, 28))
        assert len(placements[-1]) == 3 * len(ATTACK_CATEGORIES)
    assert placements[0] != placements[1]


def test_every_category_is_in_the_ground_truth(truth: dict) -> None:
    categories = truth["categories"]
    assert set(ATTACK_CATEGORIES) | set(BENIGN_CATEGORIES) <= set(categories)
    attacks = defaultdict(int)
    for entry in truth["suspicious"]:
        attacks[entry["category"]] += 1
    assert all(attacks[name] >= 3 for name in ATTACK_CATEGORIES), attacks  # several per category
    # every churning category has novel pairs; instances and NAT'd servers keep their fixed addresses
    for name, entry in categories.items():
        if entry["kind"] == "benign" and name not in ("instance", "nat_servers"):
            assert entry["pairs"] > 0, name
    assert categories["weekend"]["days"] == ["2024-06-08", "2024-06-09"]
    labels = {e["category"] for e in truth["benign_novelties"]}
    assert labels <= set(BENIGN_CATEGORIES)
    assert {"seed", "days", "start", "test_days", "identities_per_day"} <= set(truth)
    assert truth["seed"] == SEED and len(truth["identities_per_day"]) == DAYS
    assert truth["test_days"] == ["2024-06-10", "2024-06-11", "2024-06-12"]


def test_attacks_fall_on_test_days_and_are_new_to_their_victim(truth: dict, parsed: tuple) -> None:
    pairs, _, _ = parsed
    test_days = set(truth["test_days"])
    for entry in truth["suspicious"]:
        assert entry["day"] in test_days
        assert (entry["entity"], entry["source_ip"]) in pairs[entry["day"]]
        earlier = [d for d in pairs if d < entry["day"]]
        assert all((entry["entity"], entry["source_ip"]) not in pairs[d] for d in earlier)


def test_logs_parse_with_no_quarantine(sample: tuple[Path, RealisticSummary], parsed: tuple, truth: dict) -> None:
    pairs, problems, events = parsed
    assert problems == []
    _, summary = sample
    assert events == summary.events  # every record read, duplicates included, delivered the day it was written
    for entry in truth["suspicious"] + truth["benign_novelties"]:
        assert (entry["entity"], entry["source_ip"]) in pairs[entry["day"]], entry
    counts = {day: len({arn for arn, _ in found}) for day, found in pairs.items()}
    assert counts == truth["identities_per_day"]
    assert 80 <= summary.identities <= 160  # about 250 at scale 1.0


def test_vpn_move_moves_dozens_of_identities_on_one_day(truth: dict, parsed: tuple) -> None:
    pairs, _, _ = parsed
    move = truth["vpn_move_day"]
    new_block = {e["source_ip"] for e in truth["benign_novelties"] if e["category"] == "vpn_move"}
    blocks = {str(ipaddress.ip_network(f"{ip}/24", strict=False)) for ip in new_block}
    assert len(blocks) == 1  # one new egress block
    block = ipaddress.ip_network(blocks.pop())
    moved = {arn for arn, ip in pairs[move] if ":" not in ip and ipaddress.ip_address(ip) in block}
    assert len(moved) >= 24
    assert all(ipaddress.ip_address(ip) not in block for d, day in pairs.items() if d < move for _, ip in day)


def test_attacks_happen_while_the_victim_works_as_usual(truth: dict, parsed: tuple) -> None:
    """Each victim also calls that day from a network (its ISP's /16 or /32, or its AWS or runner pool)
    it used on an earlier day, so the attack sits beside ordinary activity."""
    pairs, _, _ = parsed
    attacks = {(e["day"], e["entity"], e["source_ip"]) for e in truth["suspicious"]}
    for day, arn, _ in attacks:
        before = {k for d, found in pairs.items() if d < day for a, ip in found if a == arn for k in network_keys(ip)}
        usual = [ip for a, ip in pairs[day] if a == arn and (day, a, ip) not in attacks]
        assert any(k in before for ip in usual for k in network_keys(ip)), (day, arn)


def test_ipv6_privacy_addresses_keep_their_64(truth: dict, parsed: tuple) -> None:
    pairs, _, _ = parsed
    changes = {(e["day"], e["entity"]) for e in truth["benign_novelties"] if e["category"] == "ipv6_prefix_change"}
    attacks = {(e["day"], e["entity"], e["source_ip"]) for e in truth["suspicious"]}
    daily: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for day, found in pairs.items():
        for arn, ip in found:
            if ":" in ip and (day, arn, ip) not in attacks:
                daily[arn][day].add(ip)
    rotated = 0
    for arn, days in daily.items():
        ordered = sorted(days)
        for before, after in itertools.pairwise(ordered):
            assert days[before].isdisjoint(days[after]), arn  # a new interface id every day
            nets = {str(ipaddress.ip_network(f"{ip}/64", strict=False)) for ip in days[before] | days[after]}
            if (after, arn) not in changes:
                assert len(nets) == 1, (arn, before, after)  # the same /64
            rotated += 1
    assert rotated >= 5


def test_machines_call_from_their_kinds_networks(truth: dict) -> None:
    by_category = defaultdict(set)
    for entry in truth["benign_novelties"]:
        by_category[entry["category"]].add(network_owner(entry["source_ip"]))
    assert by_category["ci_runner_pool"] == {"github-actions"}
    assert by_category["lambda_aws"] <= {f"aws:{region}" for region in AWS_EC2_RANGES}
    assert all(owner is None for c in ("home_isp", "mobile_cgnat", "office", "travel") for owner in by_category[c])
    for entry in truth["benign_novelties"]:
        if entry["category"] == "lambda_aws":
            assert ":assumed-role/" in entry["entity"] and "-role/" in entry["entity"]
        if entry["category"] == "ci_runner_pool":
            assert entry["entity"].endswith("/GitHubActions") or ":user/ci-" in entry["entity"]


def test_refuses_a_folder_with_foreign_logs(tmp_path: Path) -> None:
    (tmp_path / "AWSLogs" / "123456789012").mkdir(parents=True)
    (tmp_path / "AWSLogs" / "123456789012" / "x.json.gz").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="did not write"):
        generate_realistic_sample(tmp_path, START, days=1, seed=1, scale=0.1)
    with pytest.raises(ValueError, match="days"):
        generate_realistic_sample(tmp_path / "new", START, days=0)
