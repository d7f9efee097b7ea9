"""The same story from several sources: near-duplicate detection by MinHash
(datasketch) over character shingles of an item's text.

A wire story reprinted by several papers arrives with other headers
("本报讯" / "新华社昆明3月21日电"), footers ("（责任编辑：…）") and source lines;
the body is mostly the same. Jaccard similarity of the sets of character
5-grams (punctuation and spaces removed, NFKC) stays high under such edits
and is low for different stories on one topic; MinHash estimates it in
constant space per post, and an LSH index finds the candidates without
comparing every pair. The threshold is chosen on a labelled set of pairs
(docs/NEAR_DUPLICATES.md).

When a new item is a near-duplicate of a stored post from another source,
it joins that post's story: its front matter gets `story: <the first copy's
guid>` (and the first copy is never rewritten: each copy names the story by
its first-seen member). The index then keeps which copy of each story the
site-wide and tag feeds show (index/__init__.py, _Writer._restory). What is
remembered lives in the index (index/sources.py, table story_signatures):
the signatures of recent posts, bounded in number, shared by a cluster's
instances.
"""

from __future__ import annotations

import base64
import logging
import unicodedata
from dataclasses import asdict, dataclass

import numpy as np
from datasketch import MinHash, MinHashLSH

from feedsvc import content
from feedsvc.index.db import IndexUnavailable
from feedsvc.index.sources import StateStore

log = logging.getLogger(__name__)
NUM_PERM = 128
SHINGLE = 5
SCHEME = "affine32"            # datasketch's hash scheme: stored values are only comparable within one
MAX_REMEMBERED = 5_000         # recent posts compared with (about 3.5 MB of state)
MIN_CHARACTERS = 40            # shorter texts say too little to call two of them the same


def normalised(title: str, html_text: str) -> str:
    """The characters that carry a story: NFKC, letters and digits only."""
    text = unicodedata.normalize("NFKC", f"{title}\n{content.text_of(html_text)[1]}").lower()
    return "".join(ch for ch in text if ch.isalnum())


def shingles(text: str) -> set[bytes]:
    if len(text) <= SHINGLE:
        return {text.encode("utf-8")} if text else set()
    return {text[i:i + SHINGLE].encode("utf-8") for i in range(len(text) - SHINGLE + 1)}


def signature(text: str) -> MinHash:
    m = MinHash(num_perm=NUM_PERM, seed=1, scheme=SCHEME)
    m.update_batch(list(shingles(text)))
    return m


def similarity(a: str, b: str) -> float:
    """Estimated Jaccard similarity of two normalised texts (the bench's measure)."""
    return float(signature(a).jaccard(signature(b)))


@dataclass
class Remembered:
    guid: str                  # the post's source_guid
    story: str                 # the story it is in (a guid)
    source: str                # the source URL it came from
    hashes: str                # the MinHash values, uint32, base64


class Stories:
    """The recent posts' signatures and stories, for one collection pass."""

    def __init__(self, store: StateStore | None, threshold: float) -> None:
        self.store, self.threshold = store, threshold
        self.entries: list[Remembered] = []
        self.new: list[Remembered] = []       # remembered in this pass, not yet stored
        # Candidates only (each is then checked against `threshold`): above 0.9
        # datasketch cannot band 128 permutations.
        self.lsh = MinHashLSH(threshold=min(threshold, 0.9), num_perm=NUM_PERM)
        self._by_key: dict[str, Remembered] = {}

    @classmethod
    def load(cls, store: StateStore, threshold: float) -> Stories:
        """The remembered signatures from the index; none if it cannot be read
        (a reprint is then stored as its own story, and said so in the log)."""
        stories = cls(store, threshold)
        try:
            entries = [Remembered(**e) for e in store.story_entries(MAX_REMEMBERED)]
        except IndexUnavailable as e:
            log.warning("near-duplicate signatures unreadable (%s): starting afresh", e)
            entries = []
        for entry in entries:
            stories._index(entry)
        return stories

    def _index(self, entry: Remembered) -> None:
        key = f"{len(self.entries)}"
        self.entries.append(entry)
        self._by_key[key] = entry
        self.lsh.insert(key, _minhash(entry.hashes))

    def story_of(self, guid: str, title: str, html_text: str, source: str) -> str | None:
        """The story a new item joins (the guid of its first copy), or None if it
        is the first; remembers the item either way."""
        text = normalised(title, html_text)
        if len(text) < MIN_CHARACTERS:
            return None
        m = signature(text)
        best: tuple[float, Remembered] | None = None
        for key in self.lsh.query(m):
            other = self._by_key[key]
            if other.source == source:
                continue          # across sources only: one source's own updates are corrections
            score = float(m.jaccard(_minhash(other.hashes)))
            if score >= self.threshold and (best is None or score > best[0]):
                best = (score, other)
        story = best[1].story if best else guid
        packed = base64.b64encode(m.hashvalues.astype(np.uint32).tobytes()).decode("ascii")
        entry = Remembered(guid, story, source, packed)
        self._index(entry)
        self.new.append(entry)
        return story if best else None

    def save(self) -> None:
        """Store what this pass remembered (IndexUnavailable is the caller's to report)."""
        if not self.new or self.store is None:
            return
        self.store.add_story_entries([asdict(e) for e in self.new], keep=MAX_REMEMBERED)
        self.new = []


def _minhash(packed: str) -> MinHash:
    values = np.frombuffer(base64.b64decode(packed), dtype=np.uint32)
    return MinHash(num_perm=NUM_PERM, seed=1, hashvalues=values.copy(), scheme=SCHEME)
