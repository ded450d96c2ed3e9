"""Everyday activity: each day's sessions of people, machines and AWS services, drawn from the world.

Each day draws from its own random stream, so a day's sessions do not depend on the others; the
injected activity (see ``incidents``) comes on top and uses the helpers here for its sessions.
"""

import datetime as dt
from typing import Any

import numpy as np

from proactive_assets.samples.cloudtrail.catalog import EVENT_INDEX, UA_CI
from proactive_assets.samples.cloudtrail.clock import DAY, day_start
from proactive_assets.samples.cloudtrail.seeded import BASE32, HashedNames
from proactive_assets.samples.cloudtrail.sessions import Session, assumed_role_identity, iam_user_identity
from proactive_assets.samples.cloudtrail.world import Human, Identity, World


class DailyActivity:
    """Builds the background sessions of each day; ``scale`` multiplies the calls, not the sessions."""

    def __init__(self, world: World, names: HashedNames, start: dt.date, scale: float) -> None:
        self.world = world
        self.names = names
        self.start = start
        self.scale = scale

    # ---- sessions and credentials, also used by the incident plan

    def temporary_key(self, *parts: Any) -> str:
        """An ``ASIA...`` access key id of temporary credentials, named by ``parts``."""
        return "ASIA" + self.names.chars(BASE32, 16, "asia", *parts)

    def v6_of_day(self, human: Human, day: int) -> str:
        """The IPv6 privacy address ``human``'s home uses on ``day``."""
        assert human.home6 is not None
        return human.home6.host(int(self.names.hex(16, "v6", human.name, day), 16) | 0x0200_0000_0000_0000)

    def _human_ip(self, human: Human, day: int, at_office: bool, rng: np.random.Generator) -> str:
        """Where a person works from today: now and then the phone, else the office or home (IPv6 if it has it)."""
        if human.mobile is not None and rng.random() < 0.04:
            return str(rng.choice(human.mobile.ips(day)))
        if at_office:
            return str(rng.choice(human.office.ips(day)))
        if human.home6 is not None and rng.random() < 0.8:
            return self.v6_of_day(human, day)
        return str(rng.choice(human.home.ips(day)))

    def human_session(
        self,
        ident: Identity,
        day: int,
        start: int,
        duration: int,
        n: int,
        ip: str,
        rng: np.random.Generator,
        console: bool | None = None,
        travel: bool = False,
    ) -> list[Session]:
        """A person's calls through ``ident`` from ``ip`` (and the console's own calls, if it is a console session)."""
        human = ident.human
        assert human is not None
        day_end = day_start(self.start, day) + DAY
        end = min(start + duration, day_end - 1)
        start = min(start, end - 30)
        common = {
            "account": ident.account,
            "arn": ident.arn,
            "ip": ip,
            "start": start,
            "end": end,
            "n": n,
            "catalog": "human",
            "region_w": ident.region_w,
            "err_rate": 0.02,
            "travel": travel,
        }
        # a fixed number of draws whatever the scale, so the plan (drawn from its own stream) does not move
        console_draw, companion_draw, companion_events = rng.random(), rng.random(), int(rng.poisson(2))
        if ident.kind == "iam_user":
            return [Session(ui=iam_user_identity(ident), ua=ident.ua, **common)]
        if console is None:
            console = bool(console_draw < 0.6)
        ui = assumed_role_identity(ident, self.temporary_key(ident.arn, day, start), start - 20)
        sessions = [Session(ui=ui, ua=human.browser_ua if console else human.cli_ua, console=console, **common)]
        if console and companion_draw < 0.35:
            internal = dict(
                common, ip="AWS Internal", n=1 + round(companion_events * self.scale), catalog="internal", err_rate=0.0
            )
            sessions.append(Session(ui=ui, ua="AWS Internal", console=True, **internal))
        return sessions

    def instance_window(self, ident: Identity, when: int) -> tuple[int, int]:
        """The instance's six-hour credential window holding ``when``: its number and start."""
        period = 6 * 3600
        offset = ident.extra["rotate_offset"]
        k = (when - offset) // period
        return k, k * period + offset

    def ci_run(
        self, ident: Identity, day: int, start: int, n: int, ip: str, rng: np.random.Generator, duration: int = 400
    ) -> list[Session]:
        """A CI/CD deploy job: the web-identity role assumption, then the deploy calls."""
        account = ident.account
        ui = assumed_role_identity(ident, self.temporary_key(ident.arn, day, start), start)
        provider = f"arn:aws:iam::{account.id}:oidc-provider/token.actions.githubusercontent.com"
        subject = "repo:acme/app-service:ref:refs/heads/main"
        web = {
            "type": "WebIdentityUser",
            "principalId": f"{provider}:sts.amazonaws.com:{subject}",
            "userName": subject,
            "identityProvider": provider,
        }
        params = {
            "AssumeRoleWithWebIdentity": {
                "roleArn": ident.role_arn,
                "roleSessionName": ident.name,
                "durationSeconds": 3600,
            }
        }
        return [
            Session(
                account=account,
                ui=web,
                arn=None,
                ip=ip,
                ua=UA_CI,
                start=start - 3,
                end=start,
                events=[EVENT_INDEX["AssumeRoleWithWebIdentity"]],
                regions=[ident.region],
                errors=[False],
                params=params,
            ),
            Session(
                account=account,
                ui=ui,
                arn=ident.arn,
                ip=ip,
                ua=ident.ua,
                start=start,
                end=start + duration,
                n=n,
                catalog="cicd",
                region_w=ident.region_w,
                err_rate=0.01,
            ),
        ]

    # ---- background activity

    def day_sessions(self, day: int, rng: np.random.Generator) -> list[Session]:
        """Everything that happens on ``day`` as usual: people, machines and AWS services."""
        ds = day_start(self.start, day)
        de = ds + DAY
        weekday = (self.start + dt.timedelta(days=day)).weekday() < 5
        scale = self.scale
        sessions: list[Session] = []
        for human in self.world.humans:
            if not rng.random() < (0.9 if weekday else 0.12):
                continue
            at_office = weekday and bool(rng.random() < human.p_office)
            travel_ip = ""
            if rng.random() < 0.012:
                net = self.world.travel[int(rng.integers(0, len(self.world.travel)))]
                travel_ip = net.host(int(rng.integers(2, 255)))
            for _ in range(1 + int(rng.poisson(1.6))):
                ident = human.entities[int(np.searchsorted(human.weights, rng.random()))]
                evening = not at_office and rng.random() < 0.2
                hour = rng.uniform(19, 23.5) if evening else rng.uniform(7.5, 18.5)
                start = ds + int(((hour - human.tz) % 24) * 3600)
                ip = travel_ip or self._human_ip(human, day, at_office, rng)
                n = 1 + int(rng.poisson(human.intensity * scale))
                sessions += self.human_session(
                    ident, day, start, int(rng.integers(120, 1800)), n, ip, rng, travel=bool(travel_ip)
                )
        for ident in self.world.identities:
            kind = ident.kind
            if kind == "instance":
                sessions += self._instance_day(ident, ds, de, rng)
            elif kind == "lambda":
                sessions += self._lambda_day(ident, day, ds, rng)
            elif kind == "cicd":
                for _ in range(int(rng.poisson(3.5 if weekday else 0.3))):
                    start = ds + int(rng.uniform(12, 22) * 3600)
                    ip = str(rng.choice(ident.net.ips(day)))
                    n = 8 + int(rng.poisson(20 * scale))
                    sessions += self.ci_run(ident, day, start, n, ip, rng, int(rng.integers(180, 720)))
            elif kind == "iam_user" and ident.human is None:
                sessions += self._backup_day(ident, day, ds, rng)
            elif kind == "service_role":
                # periodic sweeps by a service-linked role (AWS Config snapshots, Auto Scaling checks)
                ui = assumed_role_identity(
                    ident, self.temporary_key(ident.arn, day), ds - 600, invoked_by=ident.fixed_ip
                )
                for region in np.flatnonzero(ident.region_w > 0):
                    for _ in range(3 if ident.catalog == "config" else 2):
                        start = ds + int(rng.integers(0, DAY - 300))
                        sessions.append(
                            Session(
                                account=ident.account,
                                ui=ui,
                                arn=ident.arn,
                                ip=ident.fixed_ip,
                                ua=ident.ua,
                                start=start,
                                end=start + 120,
                                n=int(rng.poisson(4 * scale)),
                                catalog=ident.catalog,
                                region_w=np.eye(3)[region],
                            )
                        )
        shared = self.world.accounts[2]
        for block in range(6):  # CloudTrail checking its bucket's ACL, no ARN
            start = ds + block * 4 * 3600 + int(rng.integers(0, 4 * 3600 - 60))
            sessions.append(
                Session(
                    account=shared,
                    ui={"type": "AWSService", "invokedBy": "cloudtrail.amazonaws.com"},
                    arn=None,
                    ip="cloudtrail.amazonaws.com",
                    ua="cloudtrail.amazonaws.com",
                    start=start,
                    end=start + 30,
                    n=1 + int(rng.poisson(3 * scale)),
                    catalog="cloudtrail",
                    region_w=np.eye(3)[0],
                )
            )
        return sessions

    def _instance_day(self, ident: Identity, ds: int, de: int, rng: np.random.Generator) -> list[Session]:
        """Cron-like bursts every three hours, with credentials rotated by EC2 every six hours."""
        sessions = []
        for when in range(ds + ident.extra["burst_offset"], de - 120, 3 * 3600):
            k, ws = self.instance_window(ident, when)
            ui = assumed_role_identity(ident, self.temporary_key(ident.arn, k), ws)
            sessions.append(
                Session(
                    account=ident.account,
                    ui=ui,
                    arn=ident.arn,
                    ip=ident.fixed_ip,
                    ua=ident.ua,
                    start=when,
                    end=when + 90,
                    n=int(rng.poisson(18 * self.scale)),
                    catalog="instance",
                    region_w=ident.region_w,
                    err_rate=0.003,
                    vpce=ident.vpce,
                    params=ident.params,
                )
            )
        period = 6 * 3600
        offset = ident.extra["rotate_offset"]
        for k in range((ds - offset) // period + 1, (de - offset) // period + 1):
            if ds <= k * period + offset < de:
                sessions.append(self._service_assume(ident, "ec2.amazonaws.com", k * period + offset - 1))
        return sessions

    def _service_assume(self, ident: Identity, service: str, when: int) -> Session:
        """An AWS service (EC2, Lambda) assuming ``ident``'s role: an ``AssumeRole`` record without an ARN."""
        params = {"AssumeRole": {"roleArn": ident.role_arn, "roleSessionName": ident.name}}
        return Session(
            account=ident.account,
            ui={"type": "AWSService", "invokedBy": service},
            arn=None,
            ip=service,
            ua=service,
            start=when,
            end=when + 1,
            events=[EVENT_INDEX["AssumeRole"]],
            regions=[ident.region],
            errors=[False],
            params=params,
        )

    def _lambda_day(self, ident: Identity, day: int, ds: int, rng: np.random.Generator) -> list[Session]:
        """A function's runs on its schedule (hourly, busy or daily), in a role session renewed every 4 hours."""
        schedule = ident.extra["schedule"]
        if schedule == "hourly":
            starts = [ds + h * 3600 + 31 for h in range(24)]
            mean = 4
        elif schedule == "busy":
            starts = sorted(int(x) for x in rng.integers(ds, ds + DAY - 120, int(rng.poisson(20))))
            mean = 3
        else:
            starts = [ds + 8 * 3600 + 12]
            mean = 6
        sessions = []
        for start in starts:
            block = (start - ds) // (4 * 3600)
            ui = assumed_role_identity(ident, self.temporary_key(ident.arn, day, block), ds + block * 4 * 3600)
            ip = ident.fixed_ip or str(rng.choice(ident.net.ips(day)))
            if rng.random() < 0.15:
                sessions.append(self._service_assume(ident, "lambda.amazonaws.com", start - 1))
            sessions.append(
                Session(
                    account=ident.account,
                    ui=ui,
                    arn=ident.arn,
                    ip=ip,
                    ua=ident.ua,
                    start=start,
                    end=start + 90,
                    n=1 + int(rng.poisson(mean * self.scale)),
                    catalog="lambda",
                    region_w=ident.region_w,
                    err_rate=0.002,
                )
            )
        return sessions

    def _backup_day(self, ident: Identity, day: int, ds: int, rng: np.random.Generator) -> list[Session]:
        """The backup agent's run at 01:00 UTC and its health checks every three hours."""
        ui = iam_user_identity(ident)
        sessions = [
            Session(
                account=ident.account,
                ui=ui,
                arn=ident.arn,
                ip=str(rng.choice(ident.net.ips(day))),
                ua=ident.ua,
                start=ds + 3600,
                end=ds + 3 * 3600,
                n=5 + int(rng.poisson(30 * self.scale)),
                catalog="backup",
                region_w=ident.region_w,
                err_rate=0.005,
            )
        ]
        # health checks every three hours, the last one at 23:59:55, so its records always arrive in a file of the
        # next day (delivery offsets stay below 4m55s past each 5-minute mark)
        for start in [ds + hour * 3600 + 1500 for hour in range(0, 24, 3)] + [ds + DAY - 5]:
            sessions.append(
                Session(
                    account=ident.account,
                    ui=ui,
                    arn=ident.arn,
                    ip=str(rng.choice(ident.net.ips(day))),
                    ua=ident.ua,
                    start=start,
                    end=min(start + 60, ds + DAY - 1),
                    n=1 + int(rng.poisson(self.scale)),
                    catalog="backup",
                    region_w=ident.region_w,
                )
            )
        return sessions
