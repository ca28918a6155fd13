"""Text for a terminal: file names are untrusted, so control characters in them are shown escaped.

A file named ``"\\x1b[2J\\x1b[Hfake result.png"`` would clear the screen and print a line of its own
if written raw. :func:`printable` escapes every control character (C0, DEL, C1), the bidirectional
overrides that make text read in another order, line and paragraph separators, and lone surrogates
(undecodable bytes of a file name), Python-style (``\\x1b``, ``\\n``, ``\\u202e``). Everything else,
accents and CJK and emoji included, is kept. JSON output needs none of this: JSON escapes them itself.
"""

from __future__ import annotations

import logging
import re

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: object) -> str:
    """``str(text)`` with control characters escaped, safe to write to a terminal."""
    return _UNSAFE.sub(_escape, str(text))


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


class PrintableFormatter(logging.Formatter):
    """A log formatter whose messages are :func:`printable` (tracebacks stay as they are)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))
