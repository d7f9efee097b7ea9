"""Full text for sources with `fulltext: true`: each new item's page is
fetched and its article extracted (trafilatura, see extract.py), within caps
on pages per source and pass, bytes per page and time.

Extraction runs in one child process per collection pass (spawned, not
forked, so it starts clean), for two reasons: the serving workers, one of
which leads and collects, never import the extraction libraries, and an
extraction that runs past its time is stopped by ending the child — a thread
could not be stopped. A page that fails in any way keeps the feed's own
content; the reason is counted and reported (collect's summary, /status).
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.pool
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from feedsvc import content
from feedsvc.errors import FetchError
from feedsvc.upstream.fetch import Fetcher, Limits
from feedsvc.upstream.polite import HostGate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FulltextLimits:
    pages: int = 30                 # article pages per source and pass
    max_bytes: int = 5 * 2**20      # per article page
    page_seconds: float = 20.0      # to fetch one page, whatever the server does
    extract_seconds: float = 15.0   # to extract one page
    pass_seconds: float = 180.0     # all pages of one source in one pass


class FulltextError(Exception):
    """One page could not give its article; the message says why."""


class FullText:
    def __init__(self, limits: FulltextLimits | None = None, *, site_url: str = "",
                 allow_private: bool = True, gate: HostGate | None = None) -> None:
        self.limits = limits or FulltextLimits()
        self.gate = gate or HostGate()
        self._lock = threading.Lock()   # one extraction at a time: one child process
        lim = self.limits
        self.fetcher = Fetcher(Limits(connect_timeout=min(5.0, lim.page_seconds),
                                      read_timeout=min(10.0, lim.page_seconds),
                                      deadline=lim.page_seconds, max_bytes=lim.max_bytes,
                                      retries=0),
                               site_url=site_url, allow_private=allow_private)
        self._pool: multiprocessing.pool.Pool | None = None

    def article(self, url: str) -> str:
        """The sanitisable HTML of the article at `url` (FulltextError if none)."""
        try:
            with self.gate.turn(url):
                fetched = self.fetcher.get(url)
        except FetchError as e:
            raise FulltextError(f"{url}: {e}") from e
        start = time.monotonic()
        with self._lock:
            pool = self._pool_now()
            job = pool.apply_async(_extract, (fetched.body, fetched.content_type, fetched.url))
            try:
                html = job.get(timeout=self.limits.extract_seconds)
            except multiprocessing.TimeoutError as e:
                self._stop()
                raise FulltextError(f"{url}: extraction took longer than "
                                    f"{self.limits.extract_seconds:g} s") from e
            except Exception as e:  # noqa: BLE001 - the extractor's own errors, whatever they are
                raise FulltextError(f"{url}: the extractor failed: {type(e).__name__}: "
                                    f"{e}") from e
        log.debug("extracted %s in %.2f s", url, time.monotonic() - start)
        if not html.strip():
            raise FulltextError(f"{url}: no article found on the page")
        # Absolute against the page as fetched (after redirects), as every post is.
        parts = urlsplit(fetched.url)
        return content.sanitise(str(html), fetched.url, f"{parts.scheme}://{parts.netloc}")

    def _pool_now(self) -> multiprocessing.pool.Pool:
        if self._pool is None:
            self._pool = multiprocessing.get_context("spawn").Pool(1)
        return self._pool

    def _stop(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None
        self.fetcher.close()


def _extract(body: bytes, content_type: str, url: str) -> str:
    # Imported in the child only.
    from feedsvc.upstream.extract import article_html

    return article_html(body, content_type, url)
