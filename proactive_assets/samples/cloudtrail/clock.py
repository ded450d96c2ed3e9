"""UTC day boundaries and the timestamp formats CloudTrail writes, all on integer epoch seconds."""

import calendar
import datetime as dt

DAY = 86_400


def day_start(start: dt.date, day: int) -> int:
    """Epoch seconds of midnight UTC, ``day`` days after ``start``."""
    return calendar.timegm(start.timetuple()) + day * DAY


def iso_time(epoch: int) -> str:
    """``2025-03-03T12:00:00Z``, as in ``eventTime`` and the digests."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp(epoch: int, fmt: str) -> str:
    """``epoch`` formatted in UTC with ``fmt`` (the dates and times inside object keys)."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime(fmt)
