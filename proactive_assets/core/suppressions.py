"""Suppressions: an allow-list in TOML (identities, CIDRs, accounts) applied before publishing.

Suppressed alerts are still recorded, with the rule that suppressed them.
"""

import fnmatch
import ipaddress
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from proactive_assets.core.alerts import as_name_list, object_series, parse_ip


class SuppressionError(ValueError):
    """A suppression file is missing, not TOML, or has an invalid entry (the message says which)."""


@dataclass(frozen=True)
class SuppressionRule:
    """One allow-list entry: ``kind`` is identity, cidr or account."""

    kind: str
    value: str
    reason: str | None = None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None

    def label(self) -> str:
        """How the rule is shown in ``suppressed_by``."""
        text = f"{self.kind}:{self.value}"
        return f"{text} ({self.reason})" if self.reason else text


@dataclass(frozen=True)
class Suppressions:
    """Parsed allow-list; empty by default (nothing suppressed)."""

    identities: tuple[SuppressionRule, ...] = ()
    cidrs: tuple[SuppressionRule, ...] = ()
    accounts: tuple[SuppressionRule, ...] = ()
    source: str | None = field(default=None, compare=False)

    def __len__(self) -> int:
        return len(self.identities) + len(self.cidrs) + len(self.accounts)

    def match(self, entity: str, source_ip: str, accounts: Sequence[str]) -> SuppressionRule | None:
        """The first rule (identities, then CIDRs, then accounts) that covers this alert."""
        for rule in self.identities:
            if fnmatch.fnmatchcase(str(entity), rule.value):
                return rule
        if self.cidrs:
            addr = parse_ip(source_ip)
            if addr is not None:
                for rule in self.cidrs:
                    if rule.network is not None and addr in rule.network:
                        return rule
        # An alert seen in several accounts is suppressed only if every one of them is.
        if self.accounts and accounts:
            by_account = {r.value: r for r in self.accounts}
            if all(a in by_account for a in accounts):
                return by_account[min(accounts)]
        return None


_KINDS = {"identities": ("identity", "arn"), "cidrs": ("cidr", "cidr"), "accounts": ("account", "account")}


def _parse_entry(path: str, section: str, position: int, entry: Any) -> SuppressionRule:
    kind, key = _KINDS[section]
    where = f"{path}: {section}[{position}]"
    reason: str | None = None
    if isinstance(entry, dict):
        unknown = set(entry) - {key, "reason"}
        if unknown:
            raise SuppressionError(f"{where}: unknown key(s) {sorted(unknown)}; expected '{key}' and optional 'reason'")
        if key not in entry:
            raise SuppressionError(f"{where}: missing '{key}' in {entry!r}")
        reason = entry.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise SuppressionError(f"{where}: 'reason' must be a string, got {reason!r}")
        value = entry[key]
    else:
        value = entry
    if not isinstance(value, str) or not value.strip():
        hint = " (quote account ids: leading zeros matter)" if kind == "account" and isinstance(value, int) else ""
        raise SuppressionError(f"{where}: expected a non-empty string, got {value!r}{hint}")
    value = value.strip()
    if kind == "cidr":
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise SuppressionError(f"{where}: {value!r} is not an IPv4/IPv6 network ({exc})") from None
        return SuppressionRule(kind, str(network), reason, network)
    if kind == "account" and not re.fullmatch(r"\d{12}", value):
        raise SuppressionError(f"{where}: {value!r} is not a 12-digit AWS account id")
    return SuppressionRule(kind, value, reason)


def parse_suppressions(data: Mapping[str, Any], source: str = "<suppressions>") -> Suppressions:
    """Validate an already-parsed suppression mapping (see :func:`load_suppressions`)."""
    unknown = set(data) - set(_KINDS)
    if unknown:
        raise SuppressionError(f"{source}: unknown section(s) {sorted(unknown)}; expected {sorted(_KINDS)}")
    parsed: dict[str, tuple[SuppressionRule, ...]] = {}
    for section in _KINDS:
        entries = data.get(section, [])
        if not isinstance(entries, list):
            raise SuppressionError(f"{source}: '{section}' must be a list, got {type(entries).__name__}")
        parsed[section] = tuple(_parse_entry(source, section, i, e) for i, e in enumerate(entries))
    return Suppressions(parsed["identities"], parsed["cidrs"], parsed["accounts"], source)


def load_suppressions(path: str | Path) -> Suppressions:
    """Read the allow-list from a TOML file (stdlib ``tomllib``; no YAML dependency).

    Format: three optional lists; each entry is a string or a table with the value and an
    optional ``reason``::

        identities = ["arn:aws:iam::111122223333:role/ci-*",          # exact ARN or fnmatch glob
                      { arn = "arn:aws:iam::111122223333:user/scanner", reason = "vuln scanner" }]
        cidrs = ["10.0.0.0/8", { cidr = "2001:db8::/32", reason = "office" }]
        accounts = [{ account = "444455556666", reason = "sandbox" }]

    Any invalid entry raises :class:`SuppressionError` naming the file and the entry.
    """
    source = str(path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise SuppressionError(f"{source}: suppression file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise SuppressionError(f"{source}: not valid TOML ({exc})") from None
    return parse_suppressions(data, source)


def apply_suppressions(alerts: pd.DataFrame, suppressions: Suppressions | None) -> pd.DataFrame:
    """Copy of ``alerts`` with ``suppressed`` (bool) and ``suppressed_by`` (rule label or None).

    Suppressed alerts stay in the table (auditable) but are not published.
    """
    out = alerts.copy()
    if suppressions is None or len(suppressions) == 0 or out.empty:
        out["suppressed"] = False
        out["suppressed_by"] = None
        return out
    account_lists: Iterable[Any] = out["accounts"] if "accounts" in out.columns else [None] * len(out)
    rules = [
        suppressions.match(e, ip, as_name_list(a))
        for e, ip, a in zip(out["entity"], out["source_ip"], account_lists, strict=True)
    ]
    out["suppressed"] = [r is not None for r in rules]
    out["suppressed_by"] = object_series([r.label() if r is not None else None for r in rules], out.index)
    return out
