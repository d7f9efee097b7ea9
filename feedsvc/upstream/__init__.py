"""Upstream sources: fetching them (fetch.py) and storing their items as posts
(collector.py, the `feedsvc collect` verb). Only the leader and the CLI import
this package; serving workers do not."""
