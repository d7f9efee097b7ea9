"""The exception hierarchy: raised where a problem is found, mapped to exit
codes and HTTP statuses only at the edges (cli.py, app.py)."""

from __future__ import annotations


class FeedsvcError(Exception):
    """Base class of every error feedsvc raises on purpose."""


class ConfigError(FeedsvcError):
    """config.yaml is unusable; names the file, the key path and the line."""

    def __init__(self, file: str, key: str, message: str, line: int | None = None) -> None:
        self.file, self.key, self.reason, self.line = file, key, message, line
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


class PostError(FeedsvcError):
    """One post cannot be used; the collector skips it and reports this."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


class YamlError(FeedsvcError):
    """YAML that is malformed or breaks our limits (size, aliases)."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        self.reason, self.line = reason, line
        super().__init__(reason)


class QueryError(FeedsvcError):
    """A known query parameter with an invalid value (HTTP 400)."""


class NotFound(FeedsvcError):
    """No such feed, format or page (HTTP 404)."""


class FetchError(FeedsvcError):
    """An upstream source could not be fetched or parsed."""
