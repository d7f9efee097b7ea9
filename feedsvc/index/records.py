"""How a post is stored in the index: its fields as a pickled tuple (the
`record` column) and its body compressed (`body`). One owner for the format,
used where posts are read (reading.py: in the pool's processes, so that a
first indexing's single writer does not pickle and compress a million posts
itself) and where they are served (Views)."""

from __future__ import annotations

import pickle
import zlib
from dataclasses import fields
from operator import attrgetter

from feedsvc.posts import Post

FIELDS = tuple(f.name for f in fields(Post))
_VALUES = attrgetter(*FIELDS)


def pack_post(post: Post) -> bytes:
    return pickle.dumps(_VALUES(post), protocol=5)


def unpack_post(record: bytes) -> Post:
    return Post(*pickle.loads(record))  # noqa: S301 - our own index, written by us


def pack_body(body: str) -> bytes:
    # Level 1: half the CPU of level 6 at a first indexing, a little more disk.
    return zlib.compress(body.encode("utf-8", "surrogatepass"), 1)


def unpack_body(packed: bytes) -> str:
    return zlib.decompress(packed).decode("utf-8", "surrogatepass")
