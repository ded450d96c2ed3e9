"""Identifiers of the realistic scenario's identities, derived by hashing so they do not depend on the
order of random draws: ARNs, principal ids, access keys, SSO role names, instance ids."""

import numpy as np

from proactive_assets.samples.cloudtrail.seeded import BASE32, HashedNames
from proactive_assets.samples.cloudtrail.world import Account, Identity


def scaled(base: float, scale: float, least: int) -> int:
    """``base`` members at scale 1.0, times ``scale``, never fewer than ``least``."""
    return max(least, round(base * scale))


class IdentityNames:
    """ARNs, principal ids and keys, derived by hashing so they do not depend on the order of draws."""

    def __init__(self, names: HashedNames) -> None:
        self.names = names
        self.sso_roles: dict[tuple[str, str], str] = {}

    def user(self, account: Account, name: str, catalog: str, region_w: np.ndarray, ua: str) -> Identity:
        return Identity(
            kind="iam_user",
            account=account,
            arn=f"arn:aws:iam::{account.id}:user/{name}",
            name=name,
            principal="AIDA" + self.names.chars(BASE32, 17, "realistic-aida", account.id, name),
            catalog=catalog,
            region_w=np.asarray(region_w, dtype=float),
            access_key="AKIA" + self.names.chars(BASE32, 16, "realistic-akia", account.id, name),
            ua=ua,
        )

    def role(
        self,
        kind: str,
        account: Account,
        role: str,
        session: str,
        catalog: str,
        region_w: np.ndarray,
        ua: str = "",
        path: str = "/",
    ) -> Identity:
        return Identity(
            kind=kind,
            account=account,
            arn=f"arn:aws:sts::{account.id}:assumed-role/{role}/{session}",
            name=session,
            role=role,
            role_path=path,
            principal="AROA" + self.names.chars(BASE32, 17, "realistic-aroa", account.id, role),
            catalog=catalog,
            region_w=np.asarray(region_w, dtype=float),
            ua=ua,
        )

    def sso(self, email: str, account: Account, permission_set: str, region_w: np.ndarray) -> Identity:
        role = self.sso_roles.setdefault(
            (account.id, permission_set),
            f"AWSReservedSSO_{permission_set}_{self.names.hex(16, 'realistic-sso', account.id, permission_set)}",
        )
        return self.role("sso", account, role, email, "human", region_w, path="/aws-reserved/sso.amazonaws.com/")

    def instance_id(self, *parts: object) -> str:
        return "i-0" + self.names.hex(16, "realistic-instance", *parts)
