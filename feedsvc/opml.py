"""OPML 2.0 (http://opml.org/spec2.opml) listing every category feed, for
importing them all into a reader at once. Pure: the same config gives the
same bytes, so the file has a stable ETag and the static export matches.
"""

from __future__ import annotations

from lxml import etree

from feedsvc.config import Config
from feedsvc.content import strip_illegal as clean
from feedsvc.feeds import FeedKey, html_page

MIMETYPE = "text/x-opml; charset=utf-8"
PATH = "/opml.xml"
# The format readers subscribe to from an OPML outline of type="rss".
OUTLINE_FORMAT = "rss"


def build(config: Config) -> bytes:
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = clean(config.site.title)
    if config.site.author:
        etree.SubElement(head, "ownerName").text = clean(config.site.author.name)
    etree.SubElement(head, "docs").text = "http://opml.org/spec2.opml"
    body = etree.SubElement(root, "body")
    for slug, cat in config.categories.items():
        outline = etree.SubElement(body, "outline")
        # Attribute order is fixed here, which keeps the bytes deterministic.
        outline.set("type", "rss")
        outline.set("text", clean(cat.title))
        outline.set("title", clean(cat.title))
        outline.set("xmlUrl", FeedKey("category", slug, OUTLINE_FORMAT).url(config.feeds_url))
        outline.set("htmlUrl", html_page(FeedKey("category", slug, OUTLINE_FORMAT), config))
        if cat.description:
            outline.set("description", clean(cat.description))
        if config.site.language:
            outline.set("language", config.site.language)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))
