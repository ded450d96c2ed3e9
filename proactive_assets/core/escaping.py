"""Values that came from a log, made safe for each place they are shown or sent.

Every field of a CloudTrail record (ARN, event name, account, region, user agent, object key) is
chosen by whoever can write to the log or the bucket. Tables and JSON keep them as data; every
text sink encodes them for its medium at the last moment:

* :func:`one_line` for plain-text lines (the SNS text body and subject, log lines): one printable
  line, so a value can never start a line of its own (``\\n``, ``\\r``, ``\\v``, ``\\f``, U+0085,
  U+2028 and U+2029 all become visible escapes); a backslash is escaped too, so the encoding is
  reversible and an escaped newline cannot be confused with a real one; ``://`` is broken (``:\\x2f/``)
  so that no viewer that turns URLs into links (Dagster's log view, mail clients) makes one.
* :func:`markdown_text` for Markdown metadata: :func:`one_line`, then every character Markdown or
  HTML could read as structure as a numeric character reference (``&#91;`` renders as ``[`` but
  cannot open a link), and ``www.`` broken so GitHub-flavoured autolinking does not apply.
* :func:`unescape_one_line` reverses :func:`one_line` (tests, and consumers of the text body).
"""

import re
from typing import Any

_SIMPLE = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}

#: Characters that Markdown (CommonMark + GFM) or HTML can read as structure in running text.
MARKDOWN_SPECIAL = frozenset("\\`*_{}[]()<>#!|~&@\"'$^=+")

_WWW = re.compile(r"(?i)(www)\.")
_ESCAPE = re.compile(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|[\\nrt])")


def _escape_char(ch: str) -> str:
    if ch in _SIMPLE:
        return _SIMPLE[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _as_text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


def one_line(value: Any, *, ascii_only: bool = False, break_urls: bool = True) -> str:
    """``value`` as one printable line: backslash and non-printable characters escaped, ``://`` broken.

    ``ascii_only`` also escapes printable non-ASCII characters (for SNS ``Subject``);
    ``break_urls=False`` keeps ``://`` (for a location of our own configuration, never for log values).
    """
    text = _as_text(value)
    if text.isprintable() and "\\" not in text and "://" not in text and (text.isascii() or not ascii_only):
        return text
    out = []
    for ch in text:
        if ch == "\\" or not ch.isprintable() or (ascii_only and not ch.isascii()):
            out.append(_escape_char(ch))
        else:
            out.append(ch)
    escaped = "".join(out)
    return escaped.replace("://", ":\\x2f/") if break_urls else escaped


def unescape_one_line(text: str) -> str:
    """The original value of a :func:`one_line` text."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(1)
        simple = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}
        return simple[token] if token in simple else chr(int(token[1:], 16))

    return _ESCAPE.sub(replace, text)


def markdown_text(value: Any) -> str:
    """``value`` as inert Markdown text: renders as the (escaped) value, never as a link, image or HTML."""
    text = one_line(value)
    if any(ch in MARKDOWN_SPECIAL for ch in text):
        text = "".join(f"&#{ord(ch)};" if ch in MARKDOWN_SPECIAL else ch for ch in text)
    return _WWW.sub(r"\1&#46;", text)
