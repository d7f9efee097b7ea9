"""feedsvc: per-category RSS, Atom and JSON feeds from Jekyll-style posts."""

__version__ = "0.1.0"
