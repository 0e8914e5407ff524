"""Schemathesis hooks for the ingest API (scripts/schemathesis.sh loads them
for that run only).

The ingest refuses a `timestamp` more than a day after the request's
arrival (docs/ingest.md): a rule about the clock, which no JSON Schema can
state. Schemathesis's own `date-time` values span years 0000 to 9999, so
most would be refused as `timestamp_in_future` although the schema allows
them. These are RFC 3339 date-times from 1970 up to 23 hours from now, at
any whole-minute offset, so every one the schema allows is one the server
must take: a 400 for one of them is a failure, as it should be.
"""

import datetime as dt

import schemathesis
from hypothesis import strategies as st

_START = dt.datetime(1970, 1, 1)
_END = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=23)).replace(tzinfo=None)


def _render(moment: dt.datetime, offset_minutes: int, zulu: bool) -> str:
    at = moment.replace(tzinfo=dt.timezone.utc)
    if zulu:
        return at.isoformat().replace("+00:00", "Z")
    return at.astimezone(dt.timezone(dt.timedelta(minutes=offset_minutes))).isoformat()


schemathesis.openapi.format(
    "date-time",
    st.builds(
        _render,
        st.datetimes(min_value=_START, max_value=_END),
        st.integers(min_value=-(14 * 60 - 1), max_value=14 * 60 - 1),
        st.booleans(),
    ),
)
