"""Characters that XML 1.0 forbids (https://www.w3.org/TR/xml/#charsets): C0
controls other than TAB, LF and CR, U+FFFE, U+FFFF and lone surrogates.

feedgen (lxml) refuses a whole document for one of them, so every text that
can reach a feed loses them: front matter (posts.py), bodies (content.py);
config.yaml refuses them with the key's name (config.py).
"""

from __future__ import annotations

import re

XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def strip_illegal(text: str) -> str:
    return XML_ILLEGAL.sub("", text)
