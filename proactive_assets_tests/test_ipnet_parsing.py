"""Address parsing: the vectorised parsers read addresses exactly as ``ipaddress`` does."""

import ipaddress
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from proactive_assets.core import ipnet
from proactive_assets.core.ipnet import parse_ip, parse_ips, parse_ipv4_arrow
from proactive_assets_tests.sanitized import run_sanitized


def test_address_parsing_matches_ipaddress():
    rng = np.random.default_rng(0)
    values = [str(ipaddress.IPv4Address(int(x))) for x in rng.integers(0, 1 << 32, 2000)]
    values += ["2001:db8::1", "::1", "fe80::1", "0.0.0.0", "255.255.255.255", "075.050.255.67"]
    values += ["2001:0db8:0000:0000:0000:ff00:0042:8329", "::ffff:1.2.3.4", "1::"]
    values += ["fe80::1%eth0"]  # inet_pton refuses a zone id: ipaddress reads it (the zone is not the address)
    for given in (np.array(values, dtype=object), pa.array(values), pa.array(values, pa.large_string())):
        is6, hi, lo = parse_ips(given)
        for value, v6, h, lw in zip(values, is6, hi, lo, strict=True):
            if value == "075.050.255.67":  # leading zeros are decimal, as in ipnet.canonical_ip
                assert (v6, int(lw)) == (False, int(ipaddress.IPv4Address("75.50.255.67")))
                continue
            addr = ipaddress.ip_address(value)
            assert v6 == (addr.version == 6)
            assert (int(h) << 64 | int(lw)) == int(addr)
    bad_values = ["ec2.amazonaws.com", "AWS Internal", "1.2.3", "1.2.3.256", "1..2.3", "", "1.2.3.4.5", "١.2.3.4"]
    bad_values += ["1.2.3.4 ", " 1.2.3.4", "1.2.3.4\x00", "1.2.3.", ".1.2.3", "1.2.3.4/32", "1234.1.1.1", "1.2.3.٤"]
    bad_values += ["2001:db8::g", "1:2:3:4:5:6:7:8:9", ":::", "2001:db8::1 "]
    for bad in [*bad_values, None]:
        for good in ("1.2.3.4", "2001:db8::1"):
            with pytest.raises(ValueError, match="not IP addresses"):
                parse_ips(np.array([good, bad], dtype=object))
            with pytest.raises(ValueError, match="not IP addresses"):
                parse_ips(pa.array([good, bad], pa.string()))


def test_vectorised_ipv4_parse_reads_every_octet_form_like_the_per_value_parser():
    """Every octet text 0-999 with 1-3 digits (leading zeros too) in each of the four positions,
    and a column sliced out of a larger one (non-zero Arrow offset)."""
    octets = [str(i) for i in range(1000)] + [f"{i:02d}" for i in range(100)] + [f"{i:03d}" for i in range(1000)]
    texts = [t for o in octets for t in (f"{o}.1.2.3", f"1.{o}.2.3", f"1.2.{o}.3", f"1.2.3.{o}")]
    valid = [parse_ip(t) is not None for t in texts]
    assert 0 < sum(valid) < len(texts)
    column = pa.array(["::1", *texts, "junk"]).slice(1, len(texts))
    value, ok = parse_ipv4_arrow(column)
    assert ok.tolist() == valid
    expected = [parse_ip(t)[1] if v else 0 for t, v in zip(texts, valid, strict=True)]
    assert value[ok].tolist() == [e for e, v in zip(expected, valid, strict=True) if v]


def _near_addresses(n: int, seed: int) -> list[str | None]:
    """Strings of digits and dots (and a few other bytes) of 0-17 bytes: addresses, near misses, nulls."""
    rng = np.random.default_rng(seed)
    alphabet = np.array(list("0123456789" * 3 + "...." + "a :٤"))
    out: list[str | None] = []
    for _ in range(n):
        if rng.random() < 0.3:
            out.append(".".join(str(x) for x in rng.integers(0, 300, 4)))
        else:
            out.append("".join(rng.choice(alphabet, rng.integers(0, 18))))
    out[::97] = [None] * len(out[::97])
    return out


def test_the_compiled_ipv4_parser_agrees_with_numpys(monkeypatch: pytest.MonkeyPatch) -> None:
    if ipnet._ipv4 is None:
        pytest.skip("the compiled parser was not built")
    column = pa.array(["x", *_near_addresses(20_000, 0)]).slice(1)
    value, ok = parse_ipv4_arrow(column)
    monkeypatch.setattr(ipnet, "_ipv4", None)
    expected_value, expected_ok = parse_ipv4_arrow(column)
    assert ok.tolist() == expected_ok.tolist() and 1000 < ok.sum() < len(ok)
    assert np.array_equal(value[ok], expected_value[ok])
    large = parse_ipv4_arrow(column.cast(pa.large_string()))
    assert large[1].tolist() == ok.tolist()


def test_the_compiled_ipv4_parser_refuses_offsets_outside_its_data() -> None:
    if ipnet._ipv4 is None:
        pytest.skip("the compiled parser was not built")
    with pytest.raises(ValueError, match="string 1 lies outside the data buffer"):
        ipnet._ipv4.parse(
            np.array([0, 7, 99], np.int64), np.zeros(7, np.uint8), np.zeros(2, np.uint32), np.zeros(2, np.uint8)
        )


SANITIZED_RUN = """
import sys
from proactive_assets.core import ipnet
from proactive_assets_tests import test_ipnet_parsing as t
from proactive_assets_tests.sanitized import load_extension
sanitized = load_extension("_ipv4", sys.argv[1])
class Patch:
    def setattr(self, target, name, value):
        setattr(target, name, value)
ipnet._ipv4 = sanitized
t.test_the_compiled_ipv4_parser_agrees_with_numpys(Patch())
ipnet._ipv4 = sanitized
t.test_vectorised_ipv4_parse_reads_every_octet_form_like_the_per_value_parser()
print("clean")
"""


def test_the_ipv4_parser_is_clean_under_address_and_undefined_behaviour_sanitizers(tmp_path) -> None:
    source = Path(ipnet.__file__).with_name("_ipv4.c")
    assert run_sanitized(source, "_ipv4", SANITIZED_RUN, tmp_path).startswith("clean")


def test_within_parsed_once_an_arrays_bytes_are_parsed_once_for_every_thread(monkeypatch) -> None:
    calls = []
    parse = ipnet._parse_ipv4_arrow

    def counted(values):
        calls.append(len(values))
        time.sleep(0.05)  # (the other thread asks meanwhile)
        return parse(values)

    monkeypatch.setattr(ipnet, "_parse_ipv4_arrow", counted)
    values = pa.array(["10.0.0.1", "2001:db8::1", "192.168.7.200", "not an address"])
    expected = parse(values)
    twin = pa.array(values.to_pylist())  # the same texts in other buffers: parsed for itself
    with ipnet.parsed_once(), ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(parse_ipv4_arrow, [values, values, values.slice(1), twin]))
        assert parse_ipv4_arrow(values) is answers[0]
    assert calls == [4, 3, 4]  # values once, its slice (another offset) and its twin each once
    for value, ok in answers:
        assert not value.flags.writeable and not ok.flags.writeable
    for (value, ok), (want_value, want_ok) in zip(
        answers, [expected, expected, parse(values.slice(1)), expected], strict=True
    ):
        assert value.tolist() == want_value.tolist() and ok.tolist() == want_ok.tolist()
    value, _ = parse_ipv4_arrow(values)  # outside the scope: parsed again, the caller's own arrays
    assert value.flags.writeable and calls == [4, 3, 4, 4]


def test_within_parsed_once_a_failed_parse_fails_for_each_caller(monkeypatch) -> None:
    def broken(values):
        time.sleep(0.05)
        raise MemoryError("no room")

    monkeypatch.setattr(ipnet, "_parse_ipv4_arrow", broken)
    values = pa.array(["10.0.0.1"])
    with ipnet.parsed_once(), ThreadPoolExecutor(2) as pool:
        asked = [pool.submit(parse_ipv4_arrow, values) for _ in range(2)]
        for answer in asked:
            with pytest.raises(MemoryError, match="no room"):
                answer.result()
