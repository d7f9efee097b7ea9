"""Who may see the admin details: the one `admin_token` of config.yaml, sent as
`Authorization: Bearer <token>` (or Basic, with the token as the password and
any user name, so that a browser's login prompt opens the admin page).

Used by `/status` (details such as sources, paths and the cache's address only
for the admin) and by every admin page. A header, never a query parameter:
URLs end up in access logs, proxies and browser histories.
"""

from __future__ import annotations

import base64
import enum
import hmac


class Access(enum.Enum):
    PUBLIC = "public"        # no credentials sent
    ADMIN = "admin"          # the configured token
    DENIED = "denied"        # credentials sent, but not the token (or none configured)


def access(authorization: str | None, token: str | None) -> Access:
    """What an `Authorization` header value grants, compared in constant time."""
    if not authorization:
        return Access.PUBLIC
    scheme, _, given = authorization.strip().partition(" ")
    if token is None or scheme.lower() not in ("bearer", "basic"):
        return Access.DENIED
    if scheme.lower() == "basic":
        try:
            given = base64.b64decode(given.strip(), validate=True).decode("utf-8").partition(":")[2]
        except ValueError:
            return Access.DENIED
    ok = hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"),
                             token.encode("utf-8"))
    return Access.ADMIN if ok else Access.DENIED
