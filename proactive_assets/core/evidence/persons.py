"""Which identities belong to the same person, from their ARNs alone.

One person often holds several identities: an IAM Identity Center (SSO) role per permission set and
account, each session named after them (``assumed-role/AWSReservedSSO_Admin_1a2b/jo.doe@example.com``),
and an IAM user (``user/jo.doe``). When one of them calls from a home or office network the person's
other identity already uses, the network is new to that identity but not to its owner: a person
switching roles, not stolen credentials (an intruder is not on the victim's other identities'
networks).

Only names AWS sets link identities: IAM user names and the session names of Identity Center
roles (``AWSReservedSSO_*``, named by Identity Center after the user). A session name the caller
picks (AssumeRole's ``RoleSessionName``, GetFederationToken's name) could be an intruder's choice
of a colleague who works from the network they are on, so it links nothing; nor do machine
sessions (an instance id, a function name, ``GitHubActions``), shared by unrelated workloads.
"""

import functools
import hashlib
from collections.abc import Iterable

import numpy as np


def person_name(arn: str) -> str:
    """The person an identity belongs to (lower case, without a ``@domain``), or ``""`` for none."""
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[2] not in ("iam", "sts"):
        return ""
    path = parts[5].split("/")
    kind, name = path[0], path[-1] if len(path) > 1 else ""
    if kind == "assumed-role":
        if len(path) < 3 or not path[1].startswith("AWSReservedSSO_"):
            return ""
    elif kind != "user":
        return ""
    return name.split("@", 1)[0].strip().lower()


def person_codes(arns: Iterable[str]) -> np.ndarray:
    """A stable 64-bit code per identity for its person: odd, or 0 where it has none (a machine,
    the root user, anything unparsed)."""
    values = arns.tolist() if hasattr(arns, "tolist") else list(arns)
    return np.fromiter((_person_code(str(arn)) for arn in values), np.uint64, len(values))


@functools.lru_cache(maxsize=1 << 16)
def _person_code(arn: str) -> int:
    """``person_codes`` of one identity, remembered: every model and scored day of a window codes the
    same identities again (a warm day of the realistic benchmark spent 2.5 ms of its 55 here)."""
    name = person_name(arn)
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little") | 1 if name else 0
