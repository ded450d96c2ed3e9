"""Source-IP classification shared by ingestion, the model and alerts.

CloudTrail's ``sourceIPAddress`` holds an IPv4/IPv6 address, an AWS service host name
(``ec2.amazonaws.com``) or ``AWS Internal``. Only real addresses make (entity, ip) pairs.
Anonymised samples carry octets with leading zeros (``075.050.255.67``); they are read as
decimal (``75.50.255.67``), never as octal the way ``inet_aton`` would.
"""

import ipaddress
from functools import lru_cache

KIND_IP = "ip"
KIND_AWS_SERVICE = "aws_service"
KIND_AWS_INTERNAL = "aws_internal"
KIND_INVALID = "invalid"


@lru_cache(maxsize=65536)
def classify_source(value: str | None) -> tuple[str, str | None]:
    """Return ``(kind, canonical_ip)``; ``canonical_ip`` is set only when kind is ``ip``."""
    if value is None:
        return KIND_INVALID, None
    text = value.strip()
    if not text:
        return KIND_INVALID, None
    lowered = text.lower()
    if lowered.endswith(".amazonaws.com") or lowered == "amazonaws.com":
        return KIND_AWS_SERVICE, None
    if lowered == "aws internal":
        return KIND_AWS_INTERNAL, None
    canonical = canonical_ip(text)
    if canonical is None:
        return KIND_INVALID, None
    return KIND_IP, canonical


def canonical_ip(text: str) -> str | None:
    """Canonical text of an IPv4/IPv6 address, or None if ``text`` is not one."""
    if ":" in text:
        try:
            addr = ipaddress.IPv6Address(text.split("%", 1)[0])
        except ValueError:
            return None
        mapped = addr.ipv4_mapped
        return str(mapped) if mapped is not None else str(addr)
    parts = text.split(".")
    if len(parts) != 4:
        return None
    octets = []
    for part in parts:
        if not part.isdigit() or len(part) > 3:
            return None
        number = int(part)
        if number > 255:
            return None
        octets.append(str(number))
    return ".".join(octets)
