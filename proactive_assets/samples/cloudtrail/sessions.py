"""Sessions: one caller with one set of credentials from one source address for a while.

A session becomes records when the day is written: either ``n`` calls drawn from its catalog
(background activity) or the exact ``events``, ``regions`` and ``errors`` it lists (injections,
role assumptions).
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

from proactive_assets.samples.cloudtrail.clock import iso_time
from proactive_assets.samples.cloudtrail.world import Account, Identity


@dataclass
class Session:
    """The caller (``ui``: the record's ``userIdentity``), where from, when, and what it calls."""

    account: Account
    ui: dict
    arn: str | None
    ip: str
    ua: str
    start: int
    end: int
    n: int = 0
    catalog: str = ""
    region_w: np.ndarray | None = None
    err_rate: float = 0.0
    vpce: str = ""
    console: bool = False
    params: dict | None = None
    events: list[int] | None = None
    regions: list[int] | None = None
    errors: list[bool] | None = None
    gap: tuple[int, int] = (2, 40)
    travel: bool = False

    @property
    def from_ip(self) -> bool:
        """Whether the caller has an IP address (AWS services and the console's own calls have none)."""
        return self.ip != "AWS Internal" and not self.ip.endswith(".amazonaws.com")


def iam_user_identity(ident: Identity) -> dict:
    """The ``userIdentity`` of a call signed with an IAM user's access key."""
    return {
        "type": "IAMUser",
        "principalId": ident.principal,
        "arn": ident.arn,
        "accountId": ident.account.id,
        "accessKeyId": ident.access_key,
        "userName": ident.name,
    }


def assumed_role_identity(ident: Identity, key: str, created: int, invoked_by: str = "") -> dict:
    """The ``userIdentity`` of a call with temporary key ``key`` of a role session begun at ``created``."""
    context: dict[str, Any] = {
        "sessionIssuer": {
            "type": "Role",
            "principalId": ident.principal,
            "arn": ident.role_arn,
            "accountId": ident.account.id,
            "userName": ident.role,
        },
        "webIdFederationData": {},
        "attributes": {"creationDate": iso_time(created), "mfaAuthenticated": "false"},
    }
    if ident.kind == "instance":
        context["ec2RoleDelivery"] = "2.0"
    ui = {
        "type": "AssumedRole",
        "principalId": f"{ident.principal}:{ident.name}",
        "arn": ident.arn,
        "accountId": ident.account.id,
        "accessKeyId": key,
        "sessionContext": context,
    }
    if invoked_by:
        ui["invokedBy"] = invoked_by
    return ui
