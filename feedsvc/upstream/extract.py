"""The article of one web page, by trafilatura — run only in the extractor's
child process (fulltext.py), so that no serving worker imports it and a page
that makes it run away can be stopped by ending that process."""

from __future__ import annotations

import trafilatura

from feedsvc.upstream.pages import decode


def article_html(body: bytes, content_type: str, url: str) -> str:
    """The main text of the page as HTML (links and images kept, relative URLs
    as written: fulltext.py resolves them against the page's own URL, which
    trafilatura resolves against the site's root), or "" when it finds no article."""
    text = decode(body, content_type)
    out = trafilatura.extract(text, output_format="html", include_images=True,
                              include_links=True, include_tables=True, include_comments=False,
                              favor_precision=True, deduplicate=False)
    return str(out or "")
