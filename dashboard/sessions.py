"""Lasting dashboard logins: a signed, expiring, HttpOnly cookie, and the two routes that
set and clear it.

The cookie is `<user>.<expires>.<mac>`, the MAC keyed by `cookie_secret` over the user, the
expiry and the user's stored password hash, so a changed password or a removed user voids
it. Streamlit's script cannot set an HttpOnly cookie, so a login hands the value over under
a one-time token that the page POSTs to `SESSION_PATH`; `LOGOUT_PATH` clears and revokes it.
The signing and checking functions are pure; `HANDOFFS`, `REVOKED` and the routes hold the
process's state. The whole scheme: docs/security.md, "Dashboard login".
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

COOKIE = "oddsflow_session"
SESSION_PATH = "/_oddsflow/session"
LOGOUT_PATH = "/_oddsflow/logout"
DEFAULT_HOURS = 12.0
HANDOFF_S = 60.0  # a login's token must reach SESSION_PATH within this
USER_NAME = re.compile(r"[A-Za-z0-9_@-][A-Za-z0-9_.@-]{0,63}")

# Where no `cookie_secret` is configured: logins survive a reload, not a restart.
PROCESS_SECRET = secrets.token_bytes(32)


# ---- the pure part ---------------------------------------------------------------------------


def _mac(secret: bytes, user: str, expires: int, stored_hash: str) -> str:
    message = f"{user}\n{expires}\n{stored_hash}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign_session(user: str, stored_hash: str, secret: bytes, expires: int) -> str:
    """The cookie value for `user` (whose password hash is `stored_hash`) until `expires`."""
    return f"{user}.{expires}.{_mac(secret, user, expires, stored_hash)}"


def session_user(
    value: str, users: Mapping[str, str], secret: bytes, now: float, max_age_s: float
) -> str | None:
    """The user a cookie value logs in, or None when it is malformed, tampered with,
    expired, further ahead than a cookie's lifetime, or its user or password changed."""
    parts = value.rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    user, expires_text, mac = parts
    stored = users.get(user)
    expires = int(expires_text)
    if stored is None or not now < expires <= now + max_age_s:
        return None
    expected = _mac(secret, user, expires, stored)
    return user if hmac.compare_digest(expected.encode(), mac.encode("utf-8", "replace")) else None


# ---- this process's state --------------------------------------------------------------------


@dataclass
class Handoffs:
    """Signed cookie values waiting for the browser to fetch them, by one-time token."""

    pending: dict[str, tuple[str, int, float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, value: str, max_age_s: int) -> str:
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self.lock:
            self.pending = {t: p for t, p in self.pending.items() if now - p[2] < HANDOFF_S}
            self.pending[token] = (value, max_age_s, now)
        return token

    def take(self, token: str) -> tuple[str, int] | None:
        """(the cookie value, its max age) for a token seen for the first time, in time."""
        with self.lock:
            found = self.pending.pop(token, None)
        if found is None or time.monotonic() - found[2] >= HANDOFF_S:
            return None
        return found[0], found[1]


@dataclass
class Revoked:
    """Cookie values logged out before their expiry (forgotten once expired)."""

    values: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, value: str) -> None:
        expires = value.rsplit(".", 2)[1] if value.count(".") >= 2 else ""
        now = time.time()
        with self.lock:
            self.values = {v: e for v, e in self.values.items() if e > now}
            self.values[value] = int(expires) if expires.isdigit() else int(now) + 86_400

    def __contains__(self, value: object) -> bool:
        with self.lock:
            return value in self.values


HANDOFFS = Handoffs()
REVOKED = Revoked()


# ---- the routes ------------------------------------------------------------------------------


async def _set_cookie(request: Request) -> Response:
    """POST SESSION_PATH with a handoff token as the body: 204 with the cookie, else 400."""
    taken = HANDOFFS.take((await request.body()).decode("ascii", "replace").strip())
    if taken is None:
        return Response(status_code=400)
    value, max_age = taken
    response = Response(status_code=204)
    response.set_cookie(
        COOKIE,
        value,
        max_age=max_age,
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


async def _clear_cookie(request: Request) -> Response:
    """POST LOGOUT_PATH: revoke the cookie the browser sent and tell it to drop it."""
    value = request.cookies.get(COOKIE)
    if value:
        REVOKED.add(value)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


def routes() -> list[Route]:
    return [
        Route(SESSION_PATH, _set_cookie, methods=["POST"]),
        Route(LOGOUT_PATH, _clear_cookie, methods=["POST"]),
    ]
