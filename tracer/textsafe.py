"""Text from labels and chains made safe for where it is written: spreadsheets, XML, terminals.

Entity names, label notes and tags come from label files and API keys, so an attacker can choose
them: `=HYPERLINK(...)` in a CSV cell runs as a formula when an analyst opens the export, a
control character makes GraphML/GEXF invalid XML (XML 1.0 cannot carry most of them even
escaped), and an escape sequence printed raw rewrites the investigator's terminal.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

#: Cells a spreadsheet reads as a formula (OWASP "CSV injection"): = + - @, and TAB/CR, which
#: some import dialogs drop before looking at the next character.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: Characters that reorder or hide text on a terminal (bidi overrides and isolates).
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def escape_controls(text: str) -> str:
    """Control characters (C0, DEL, C1) written as visible \\xNN escapes: the text stays readable
    and lossless to a human, and every XML 1.0 parser accepts the result."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def csv_cell(value: Any) -> Any:
    """A value for a CSV export: strings with control characters escaped and, when they could
    start a formula, prefixed with a single quote (OWASP); other values unchanged."""
    if not isinstance(value, str):
        return value
    if value.startswith(_FORMULA_START):
        value = "'" + value
    return escape_controls(value)


def xml_text(value: Any) -> Any:
    """A string attribute for GraphML/GEXF: control characters escaped, non-characters dropped."""
    if not isinstance(value, str):
        return value
    return "".join(c for c in escape_controls(value)
                   if not (0xFFFE <= ord(c) <= 0xFFFF or 0xD800 <= ord(c) <= 0xDFFF))


def terminal_safe(text: str) -> str:
    """Text for a terminal: control characters other than newline removed (escape sequences lose
    their ESC, so they print as harmless text) and bidi controls removed."""
    out = _BIDI.sub("", text)
    return "".join(c for c in out if c == "\n" or not (unicodedata.category(c) == "Cc"))
