"""VPC Flow (4001) and Route 53 (4003) rows as (resource, remote endpoint) pairs.

What detects a compromised instance is who it talks to, so the entity is the AWS resource that
owns one end of the traffic and the address is the *other* end, never the resource's own address:

* **VPC Flow**: the resource is ``instance_uid``, else ``interface_uid`` (an ENI: Fargate tasks,
  Lambda, endpoints; ``instance_uid`` is ``'-'`` there) of the endpoint on its side. The side
  comes from OCSF ``connection_info.direction_id`` (2 Outbound: the source; 1 Inbound: the
  destination), else from the only endpoint that names a resource. The remote address is the
  other endpoint's ``ip``. The event name is the protocol and service port (``tcp/443``: the
  lower of the two ports, so a request and its reply name the same service); a flow the network
  blocked (``disposition_id`` 2) has ``error_code`` ``Blocked``.
* **Route 53**: the querying resource is ``src_endpoint.instance_uid``; a query without one (from
  a resolver endpoint, or a resource that is no instance) is named by its client address in its
  VPC (``vpc-1234/10.0.0.7``). Each ``A``/``AAAA`` answer is one pair with that address; the
  event name keeps the query (``DNS A pypi.org.``) as context for explanations, and a response
  code other than ``NoError`` is the ``error_code``.

Rows that cannot make a pair (NODATA records, no resource, no remote address, a query without
an address answer...) are ordinary traffic, not bad data: they are counted by reason
(``NetworkRows.unpaired``), never quarantined. The pairs of one object are aggregated (``event_count``,
first and last time), which is what the Athena reader's SQL does in the lake (``athena_sql.py``).
"""

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from proactive_assets.core.sources.ocsf_columns import (
    blank_to_null,
    column,
    count_reasons,
    integers,
    reject,
    strings,
)

VPC_FLOW_SOURCE = "vpc-flow-logs"
ROUTE53_SOURCE = "route53-resolver"

INBOUND, OUTBOUND = 1, 2
BLOCKED = 2
#: IANA protocol numbers named in event names; others are ``proto-<n>``.
PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 58: "icmpv6", 132: "sctp"}
#: Protocols with ports: their event name carries the service port.
PORTED = ("tcp", "udp", "sctp")
#: DNS record types whose answer is an address.
ADDRESS_TYPES = ("A", "AAAA")

# Why a row makes no pair. The Athena SQL (athena_sql.py) writes the very same words.
NO_DATA = "no addresses (NODATA or SKIPDATA record)"
NO_RESOURCE = "no instance or network interface on either end"
BOTH_RESOURCES = "both ends are resources and the direction is unknown"
NO_REMOTE = "no remote address"
OWN_ADDRESS = "remote address is the resource's own"
NO_QUERIER = "no querying instance or client address"
NO_ANSWER = "no A or AAAA answer"
NOT_AN_IP = "remote is not an IP address"

#: The columns of one network pair row before aggregation, in the order the SQL returns them.
PAIR_KEYS = ("identity_arn", "identity_type", "source_ip", "event_name", "error_code", "account", "region")


@dataclass
class NetworkRows:
    """One object's network rows as pairs (not yet aggregated) and the rows that made none, by reason."""

    table: pa.Table  # PAIR_KEYS + event_time, event_count, last_event_time
    unpaired: dict[str, int] = field(default_factory=dict)


def _resource(table: pa.Table, side: str, n: int, key: str) -> tuple[pa.Array, pa.Array]:
    """(resource id, its type) of one endpoint: the instance, else the network interface."""
    instance = blank_to_null(strings(column(table, f"{side}.instance_uid"), n, key))
    interface = blank_to_null(strings(column(table, f"{side}.interface_uid"), n, key))
    resource = pc.coalesce(instance, interface)
    kind = pc.if_else(
        pc.is_valid(instance),
        pa.scalar("Instance"),
        pc.if_else(pc.is_valid(interface), pa.scalar("NetworkInterface"), pa.scalar(None, pa.string())),
    )
    return resource, kind


def _service_port(table: pa.Table, n: int, key: str) -> pa.Array:
    """The lower positive port of the two ends (a request and its reply name the same service)."""
    src = integers(column(table, "src_endpoint.port"), "src_endpoint.port", key, n)
    dst = integers(column(table, "dst_endpoint.port"), "dst_endpoint.port", key, n)
    src = pc.if_else(pc.greater(src, 0), src, pa.scalar(None, pa.int64()))
    dst = pc.if_else(pc.greater(dst, 0), dst, pa.scalar(None, pa.int64()))
    return pc.min_element_wise(src, dst, skip_nulls=True)


def _flow_names(table: pa.Table, n: int, key: str) -> pa.Array:
    number = integers(column(table, "connection_info.protocol_num"), "connection_info.protocol_num", key, n)
    known = np.array(sorted(PROTOCOLS), dtype=np.float64)
    names = pa.array([PROTOCOLS[int(v)] for v in known], pa.string())
    slot = pc.index_in(number, value_set=pa.array(known.astype(np.int64)))
    protocol = pc.if_else(
        pc.is_valid(slot),
        names.take(pc.fill_null(slot, 0)),
        pc.binary_join_element_wise(pa.scalar("proto-"), pc.cast(number, pa.string()), ""),
    )
    protocol = pc.fill_null(protocol, "ip")
    port = pc.cast(_service_port(table, n, key), pa.string())
    with_port = pc.binary_join_element_wise(protocol, port, "/")
    return pc.if_else(pc.and_(pc.is_in(protocol, value_set=pa.array(PORTED)), pc.is_valid(port)), with_port, protocol)


def vpc_flow_rows(table: pa.Table, base: pa.Table, key: str) -> NetworkRows:
    """Pairs of VPC Flow rows; ``base`` holds per row ``event_time``, ``account``, ``region`` (all readable)."""
    n = table.num_rows
    src, src_kind = _resource(table, "src_endpoint", n, key)
    dst, dst_kind = _resource(table, "dst_endpoint", n, key)
    src_ip = blank_to_null(strings(column(table, "src_endpoint.ip"), n, key))
    dst_ip = blank_to_null(strings(column(table, "dst_endpoint.ip"), n, key))
    direction = integers(column(table, "connection_info.direction_id"), "connection_info.direction_id", key, n)
    direction = np.asarray(pc.fill_null(direction, 0), dtype=np.int64)
    has_src, has_dst = np.asarray(pc.is_valid(src), bool), np.asarray(pc.is_valid(dst), bool)
    # The side the direction names, else the only side that names a resource.
    own_src = (has_src & (direction == OUTBOUND)) | (has_src & ~has_dst)
    own_dst = ~own_src & ((has_dst & (direction == INBOUND)) | (has_dst & ~has_src))
    own_src, own_dst = pa.array(own_src), pa.array(own_dst)
    none = pa.scalar(None, pa.string())
    entity = pc.if_else(own_src, src, pc.if_else(own_dst, dst, none))
    kind = pc.if_else(own_src, src_kind, pc.if_else(own_dst, dst_kind, none))
    remote = pc.if_else(own_src, dst_ip, pc.if_else(own_dst, src_ip, none))
    own_ip = pc.if_else(own_src, src_ip, pc.if_else(own_dst, dst_ip, none))

    reason = pa.nulls(n, pa.string())
    reason = reject(reason, pc.and_(pc.is_null(src_ip), pc.is_null(dst_ip)), NO_DATA)
    reason = reject(reason, pc.and_(pc.is_null(src), pc.is_null(dst)), NO_RESOURCE)
    reason = reject(reason, pc.is_null(entity), BOTH_RESOURCES)
    reason = reject(reason, pc.is_null(remote), NO_REMOTE)
    same = pc.equal(pc.utf8_trim_whitespace(remote), pc.utf8_trim_whitespace(own_ip))
    reason = reject(reason, pc.fill_null(same, False), OWN_ADDRESS)
    disposition = integers(column(table, "disposition_id"), "disposition_id", key, n)
    error = pc.if_else(pc.fill_null(pc.equal(disposition, BLOCKED), False), pa.scalar("Blocked"), none)
    rows = pa.table(
        {
            "identity_arn": entity,
            "identity_type": kind,
            "source_ip": remote,
            "event_name": _flow_names(table, n, key),
            "error_code": error,
            "account": base.column("account"),
            "region": base.column("region"),
            "event_time": base.column("event_time"),
        }
    )
    return _split(rows, reason)


def route53_rows(table: pa.Table, base: pa.Table, key: str) -> NetworkRows:
    """One pair per ``A``/``AAAA`` answer of each query, from the querying resource."""
    n = table.num_rows
    instance = blank_to_null(strings(column(table, "src_endpoint.instance_uid"), n, key))
    client_ip = blank_to_null(strings(column(table, "src_endpoint.ip"), n, key))
    vpc = blank_to_null(strings(column(table, "src_endpoint.vpc_uid"), n, key))
    client = pc.binary_join_element_wise(vpc, client_ip, "/")  # null unless both are there
    entity = pc.coalesce(instance, client)
    kind = pc.if_else(
        pc.is_valid(instance),
        pa.scalar("Instance"),
        pc.if_else(pc.is_valid(client), pa.scalar("ResolverClient"), pa.scalar(None, pa.string())),
    )
    query_type = strings(column(table, "query.type"), n, key)
    hostname = strings(column(table, "query.hostname"), n, key)
    name = pc.binary_join_element_wise(
        pa.scalar("DNS"), pc.fill_null(query_type, "?"), pc.fill_null(hostname, "?"), " "
    )
    rcode = strings(column(table, "rcode"), n, key)
    error = pc.if_else(
        pc.fill_null(pc.is_in(rcode, value_set=pa.array(["NoError", "", "-"])), True),
        pa.scalar(None, pa.string()),
        rcode,
    )
    parents, addresses = _address_answers(table, key)
    answered = np.zeros(n, dtype=bool)
    answered[parents] = True

    reason = pa.nulls(n, pa.string())
    reason = reject(reason, pc.is_null(entity), NO_QUERIER)
    reason = reject(reason, pa.array(~answered), NO_ANSWER)
    unpaired = count_reasons(reason, pc.is_valid(reason))
    ok = np.asarray(pc.is_null(reason), dtype=bool)
    keep = ok[parents]
    rows_of = pa.array(parents[keep])
    base_cols = {
        "identity_arn": entity,
        "identity_type": kind,
        "event_name": name,
        "error_code": error,
        "account": base.column("account"),
        "region": base.column("region"),
        "event_time": base.column("event_time"),
    }
    picked = {name_: _take(col, rows_of) for name_, col in base_cols.items()}
    rows = pa.table(
        {
            "identity_arn": picked["identity_arn"],
            "identity_type": picked["identity_type"],
            "source_ip": addresses.filter(pa.array(keep)),
            "event_name": picked["event_name"],
            "error_code": picked["error_code"],
            "account": picked["account"],
            "region": picked["region"],
            "event_time": picked["event_time"],
        }
    )
    return _with_counts(rows, unpaired)


def _take(values: pa.Array | pa.ChunkedArray, rows: pa.Array) -> pa.Array:
    taken = values.take(rows)
    return taken.combine_chunks() if isinstance(taken, pa.ChunkedArray) else taken


def _address_answers(table: pa.Table, key: str) -> tuple[np.ndarray, pa.Array]:
    """(row index, address text) of every ``A``/``AAAA`` answer with a value, in row order."""
    answers = column(table, "answers")
    if answers is None or not (pa.types.is_list(answers.type) or pa.types.is_large_list(answers.type)):
        return np.zeros(0, np.int64), pa.array([], pa.string())
    item = answers.type.value_type
    if not pa.types.is_struct(item) or item.get_field_index("rdata") < 0 or item.get_field_index("type") < 0:
        return np.zeros(0, np.int64), pa.array([], pa.string())
    parents = np.asarray(pc.list_parent_indices(answers), dtype=np.int64)
    flat = pc.list_flatten(answers)
    rdata = blank_to_null(strings(pc.struct_field(flat, "rdata"), len(flat), key))
    rtype = pc.utf8_upper(pc.utf8_trim_whitespace(strings(pc.struct_field(flat, "type"), len(flat), key)))
    keep = pc.fill_null(pc.and_(pc.is_in(rtype, value_set=pa.array(ADDRESS_TYPES)), pc.is_valid(rdata)), False)
    mask = np.asarray(keep, dtype=bool)
    return parents[mask], rdata.filter(keep)


def _split(rows: pa.Table, reason: pa.Array) -> NetworkRows:
    unpaired = count_reasons(reason, pc.is_valid(reason))
    return _with_counts(rows.filter(pc.is_null(reason)), unpaired)


def _with_counts(rows: pa.Table, unpaired: dict[str, int]) -> NetworkRows:
    """The pair rows with one event each, first = last time."""
    n = rows.num_rows
    rows = rows.append_column("event_count", pa.array(np.ones(n, np.int64)))
    rows = rows.append_column("last_event_time", rows.column("event_time"))
    return NetworkRows(rows, dict(unpaired))


def aggregate(rows: pa.Table) -> pa.Table:
    """One row per ``PAIR_KEYS``: events summed, first and last time; sorted, so the result is deterministic.

    Aggregating again what is already aggregated changes nothing, so the Athena result (grouped in
    SQL, then canonicalised here) and an object read row by row give the same table.
    """
    if rows.num_rows == 0:
        return rows.select([*PAIR_KEYS, "event_count", "event_time", "last_event_time"])
    grouped = rows.group_by(list(PAIR_KEYS), use_threads=False).aggregate(
        [("event_count", "sum"), ("event_time", "min"), ("last_event_time", "max")]
    )
    table = pa.table(
        {
            **{name: grouped.column(name) for name in PAIR_KEYS},
            "event_count": grouped.column("event_count_sum").cast(pa.int64()),
            "event_time": grouped.column("event_time_min"),
            "last_event_time": grouped.column("last_event_time_max"),
        }
    )
    return table.sort_by([(name, "ascending") for name in PAIR_KEYS])
