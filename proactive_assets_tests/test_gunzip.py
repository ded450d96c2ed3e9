"""Every inflater installed reads gzip exactly as zlib does: same text, same refusals, same bound.

``decompress`` picks one by the object's compressed size (``inflater_for``); each is run here on its own through
``decompress(..., inflater=name)``, against the standard library's answer on the same bytes.
"""

import gzip
import random
import struct
import zlib

import pytest

from proactive_assets.core.sources import gunzip
from proactive_assets.core.sources.gunzip import INFLATERS, ObjectTooLarge, decompress
from proactive_assets_tests.conftest import peak_allocated

DOC = b'{"Records": [' + b",".join(b'{"eventName": "Get%d", "n": %d}' % (i, i * i) for i in range(2000)) + b"]}"


@pytest.fixture(params=[*INFLATERS, *(["isal-small"] if "isal" in INFLATERS else [])])
def inflater(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each inflater; ISA-L twice: every input through its gzip decompressor ("isal"), and every
    input through the zlib-style one it uses for small objects ("isal-small")."""
    if request.param.startswith("isal"):
        monkeypatch.setattr(gunzip, "_ISAL_SMALL_INPUT", 1 << 40 if request.param == "isal-small" else -1)
        return "isal"
    return request.param


def test_the_fastest_installed_inflater_is_the_default() -> None:
    order = [name for name in ("isal", "zlib-ng", "zlib") if name in INFLATERS]
    assert list(INFLATERS) == order and order[0] == gunzip.INFLATER
    assert "zlib" in INFLATERS


def test_isal_is_installed_where_it_has_wheels() -> None:
    """setup.py requires it on the machines it has wheels for (this one included)."""
    import platform

    if platform.machine().lower() in ("x86_64", "amd64", "aarch64", "arm64"):
        assert gunzip.INFLATER == "isal"


@pytest.mark.parametrize("level", [1, 6, 9])
def test_same_text_as_zlib(inflater: str, level: int) -> None:
    rng = random.Random(level)
    noisy = bytes(rng.getrandbits(8) for _ in range(50_000))  # barely compresses: output ~ input
    for text in (DOC, noisy, b"", DOC * 40):
        data = gzip.compress(text, compresslevel=level, mtime=0)
        assert decompress(data, inflater=inflater) == zlib.decompress(data, 31) == text


def test_output_far_past_the_first_guess(inflater: str) -> None:
    """An object that inflates 1000x (far past the first buffer's guess) still reads whole."""
    text = b'{"Records": [' + b"{}," * 300_000 + b"{}]}"
    data = gzip.compress(text, compresslevel=9)
    assert len(text) > 32 * len(data)
    assert decompress(data, inflater=inflater) == text


def test_every_member_and_padding(inflater: str) -> None:
    first, second = gzip.compress(DOC[:5000]), gzip.compress(DOC[5000:])
    assert decompress(first + second, inflater=inflater) == DOC
    assert decompress(first + second + b"\0" * 64, inflater=inflater) == DOC
    with pytest.raises(zlib.error, match="not gzip"):
        decompress(first + b"garbage", inflater=inflater)


def test_truncated_and_corrupt_members_are_zlib_errors(inflater: str) -> None:
    good = gzip.compress(DOC, mtime=0)
    for cut in (len(good) - 1, len(good) - 8, len(good) // 2, 12):
        with pytest.raises(zlib.error):
            decompress(good[:cut], inflater=inflater)
    bad_crc = good[:-8] + struct.pack("<I", zlib.crc32(DOC) ^ 1) + good[-4:]
    with pytest.raises(zlib.error):
        decompress(bad_crc, inflater=inflater)
    bad_deflate = good[:10] + b"\xff" * 16 + good[26:]
    with pytest.raises(zlib.error):
        decompress(bad_deflate, inflater=inflater)


def test_a_wrong_length_in_the_trailer_is_refused(inflater: str) -> None:
    """zlib checks the trailer's length (ISIZE) as well as its CRC: so must every inflater."""
    good = gzip.compress(DOC, mtime=0)
    wrong = good[:-4] + struct.pack("<I", len(DOC) + 1)
    with pytest.raises(zlib.error):
        zlib.decompress(wrong, 31)
    with pytest.raises(zlib.error):
        decompress(wrong, inflater=inflater)


def test_a_bomb_stops_at_the_limit(inflater: str) -> None:
    limit = 1 << 20
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9)

    def refused() -> str:
        with pytest.raises(ObjectTooLarge) as error:
            decompress(bomb, limit, inflater=inflater)
        return str(error.value)

    reason, peak = peak_allocated(refused)
    assert "decompresses to more than PROACTIVE_MAX_OBJECT_BYTES (1,048,576 bytes)" in reason
    assert peak < 4 * limit
    # exactly at the limit is allowed, one byte over is not
    text = b"x" * limit
    assert decompress(gzip.compress(text), limit, inflater=inflater) == text
    with pytest.raises(ObjectTooLarge):
        decompress(gzip.compress(text + b"x"), limit, inflater=inflater)


def test_small_objects_do_not_reserve_the_limit(inflater: str) -> None:
    """An inflater sizes its buffer by what it may produce: a small object must not cost the limit."""
    data = gzip.compress(DOC)
    text, peak = peak_allocated(lambda: decompress(data, 512 << 20, inflater=inflater))
    assert text == DOC
    assert peak < 4 << 20


def test_a_trailer_that_understates_the_first_member(inflater: str) -> None:
    """The first buffer is sized from the last member's trailer: when a small member follows a big
    one, the big one is read whole all the same, in buffers that grow with it, not to the limit."""
    big = DOC * 8
    data = gzip.compress(big) + gzip.compress(b" ")
    text, peak = peak_allocated(lambda: decompress(data, 512 << 20, inflater=inflater))
    assert text == big + b" "
    assert peak < 6 * len(big)
