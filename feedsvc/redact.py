"""Secrets and local paths out of what feedsvc shows: `/status`, log lines,
error messages that quote a URL.

Every credential form a URL can carry is redacted: userinfo
(`https://user:pass@host/`, `redis://:pass@host/0`, and a user name alone,
which is often a token: `https://TOKEN@host/`), and query parameters whose name
says they hold a secret (`?password=`, `?token=`, `?api_key=`, `?sig=` …).
Text that quotes URLs is redacted URL by URL. `public_text` also removes the
folders of absolute paths, so that an unauthenticated `/status` never tells
where the site lives on the machine.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameter names that carry a credential (compared lower-case, without
# '-'/'_'): what Redis, S3/GCS presigned URLs, RSSHub and the usual web APIs use.
SECRET_PARAMS = frozenset({
    "password", "passwd", "pass", "pwd", "secret", "clientsecret", "token", "accesstoken",
    "refreshtoken", "idtoken", "authtoken", "apikey", "apitoken", "key", "accesskey",
    "secretkey", "auth", "authorization", "sig", "signature", "xamzsignature",
    "xamzcredential", "xamzsecuritytoken", "xgoogsignature", "xgoogcredential", "code",
    "session", "sessionid", "sid", "credential", "credentials", "privatekey", "jwt",
})
# A URL in free text: a scheme, '//' and then anything up to white space or a
# quote/bracket that usually ends a quoted URL.
URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()\[\]{}]+")
# The folders of an absolute path not inside a URL: "/srv/site/_posts/x.md" → "x.md".
ABSOLUTE_PATH = re.compile(r"(?<![\w/:.~-])(?:/[^\s/'\"<>:]+)+/(?=[^\s/'\"<>:]+)")


def _secret_name(name: str) -> bool:
    return name.lower().replace("-", "").replace("_", "") in SECRET_PARAMS


def url(value: str) -> str:
    """`value` with its userinfo and secret query values replaced by `***`."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        # Not parsable as a URL (a bad port, a bad IPv6 literal): hide what
        # could be a credential rather than show it.
        return re.sub(r"//[^/@]*@", f"//{MASK}@", value)
    netloc = parts.netloc
    if "@" in netloc:
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{MASK}@{host}" + (f":{port}" if port is not None else "")
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_secret_name(k) for k, _ in pairs):
            query = urlencode([(k, MASK if _secret_name(k) else v) for k, v in pairs],
                              safe="*")
    if netloc == parts.netloc and query == parts.query:
        return value
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def text(value: str) -> str:
    """Free text (an error message, a log line) with every URL in it redacted."""
    return URL_IN_TEXT.sub(lambda m: url(m.group()), value)


def public_text(value: str) -> str:
    """As `text`, and absolute paths cut to their last part: for readers
    without the admin token."""
    return ABSOLUTE_PATH.sub("", text(value))
