"""The dashboard's login: nothing but a login form until the user is authenticated.

Configured in Streamlit's secrets: OpenID Connect through `st.login`, or named users with
salted PBKDF2 password hashes (a users file written by `python -m dashboard.auth add-user`,
or inline); a login then lasts in a signed cookie (dashboard/sessions.py). With neither, the
dashboard is open and says so; a configuration asking for a login it cannot do shows an
error and no data. Settings and examples: docs/security.md, "Dashboard login".
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import importlib.util
import os
import secrets
import stat
import sys
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

import streamlit as st

from dashboard import sessions

Mode = Literal["oidc", "password", "open", "misconfigured"]
SCHEME = "pbkdf2_sha256"
ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256
FAILED_LOGIN_DELAY_S = 1.0
SESSION_KEY = "oddsflow_login"  # the signed session value, re-checked on every run
HANDOFF_KEY = "oddsflow_cookie_token"  # a login's cookie, still to be fetched by the browser
LOGGED_OUT_KEY = "oddsflow_logged_out"  # ignore the cookie this browser session came with
ADMIN = "admin"  # the user of the single `password_hash`
# A hash to check unknown users' passwords against, so they take as long as known users'.
_NOBODY = f"{SCHEME}${ITERATIONS}${'A' * 24}${'A' * 44}"


class UsersError(ValueError):
    """The users cannot be read; the message never holds a hash."""


# ---- the pure part ---------------------------------------------------------------------------


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """`pbkdf2_sha256$<iterations>$<salt>$<hash>` (base64), for `password_hash`."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{SCHEME}${iterations}${_b64(salt)}${_b64(digest)}"


def password_matches(password: str, stored: str) -> bool:
    """Does `password` match a `password_hash`? Constant-time; False for a malformed hash."""
    try:
        scheme, iterations, salt, expected = stored.split("$")
        if scheme != SCHEME:
            return False
        digest = hashlib.pbkdf2_hmac(
            "sha256", password.encode(), base64.b64decode(salt), int(iterations)
        )
        return hmac.compare_digest(digest, base64.b64decode(expected))
    except ValueError:  # wrong number of parts, bad base64, bad iteration count
        return False


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def login_mode(config: Mapping[str, Any]) -> Mode:
    """How this configuration (Streamlit's secrets as a dict) wants users to log in."""
    ours = config.get("oddsflow") or {}
    if config.get("auth"):
        return "oidc"
    if ours.get("password_hash") or ours.get("users_file") or ours.get("users"):
        return "password"
    return "misconfigured" if ours.get("require_login") else "open"


def oidc_provider(config: Mapping[str, Any]) -> str | None:
    """The provider name for `st.login`: `[oddsflow] auth_provider`, else the one
    `[auth.<name>]` table, else None (the provider is configured in `[auth]` itself)."""
    chosen = (config.get("oddsflow") or {}).get("auth_provider")
    if chosen:
        return str(chosen)
    tables = [name for name, value in (config.get("auth") or {}).items() if isinstance(value, dict)]
    return tables[0] if len(tables) == 1 else None


def email_allowed(config: Mapping[str, Any], email: str | None) -> bool:
    allowed = (config.get("oddsflow") or {}).get("allowed_emails")
    if not allowed:
        return True
    return email is not None and email.lower() in {str(e).lower() for e in allowed}


def parse_users(table: object, where: str = "users") -> dict[str, str]:
    """{name: password hash} from a `[users]` table; `UsersError` for a bad name or hash."""
    if not isinstance(table, Mapping):
        raise UsersError(f"{where}: expected a table of name = password hash")
    users: dict[str, str] = {}
    for name, stored in table.items():
        if not sessions.USER_NAME.fullmatch(str(name)):
            raise UsersError(f"{where}: {name!r} is not a user name (letters, digits, _.@-)")
        if not isinstance(stored, str) or not stored.startswith(SCHEME + "$"):
            raise UsersError(f"{where}: the hash of {name} is not a {SCHEME} hash")
        users[str(name)] = stored
    return users


def read_users_file(path: Path) -> dict[str, str]:
    """The `[users]` table of a users file, which others must not be able to read."""
    where = f"users file {path}"
    try:
        mode = path.stat().st_mode
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsersError(f"{where}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsersError(f"{where} is not valid TOML: {exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsersError(f"{where} is readable by others; chmod 600 it")
    return parse_users(doc.get("users", {}), where)


def configured_users(config: Mapping[str, Any]) -> dict[str, str]:
    """Every user who may log in: the users file, the inline `[oddsflow.users]`, and the
    single `password_hash` as `admin`. `UsersError` when they cannot be read or collide."""
    ours = config.get("oddsflow") or {}
    users: dict[str, str] = {}
    if ours.get("users_file"):
        users |= read_users_file(Path(str(ours["users_file"])).expanduser())
    for name, stored in parse_users(ours.get("users") or {}, "[oddsflow.users]").items():
        if name in users:
            raise UsersError(f"{name} is both in the users file and in [oddsflow.users]")
        users[name] = stored
    if ours.get("password_hash"):
        if ADMIN in users:
            raise UsersError(f"password_hash is the user {ADMIN}, who is also in the users")
        users[ADMIN] = str(ours["password_hash"])
    return users


@dataclass(frozen=True, repr=False)
class CookieSettings:
    secret: bytes
    max_age_s: int

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> CookieSettings:
        ours = config.get("oddsflow") or {}
        secret = ours.get("cookie_secret")
        hours = float(ours.get("session_hours", sessions.DEFAULT_HOURS))
        key = str(secret).encode() if secret else sessions.PROCESS_SECRET
        return cls(key, max(1, int(hours * 3600)))


def check_login(users: Mapping[str, str], user: str, password: str) -> bool:
    """Is this the user's password? As slow for an unknown user as for a known one."""
    stored = users.get(user)
    matches = password_matches(password, stored or _NOBODY)
    return stored is not None and matches


def add_user(path: Path, name: str, stored: str) -> None:
    """Add the user to the users file, or change their hash (which ends their sessions)."""
    users = read_users_file(path) if path.exists() else {}
    _write_users(path, users | parse_users({name: stored}))


def remove_user(path: Path, name: str) -> bool:
    """Remove the user from the users file (their sessions end); False if not there."""
    users = read_users_file(path)
    if users.pop(name, None) is None:
        return False
    _write_users(path, users)
    return True


def _write_users(path: Path, users: Mapping[str, str]) -> None:
    lines = ["# oddsflow dashboard users: python -m dashboard.auth add-user NAME --file FILE"]
    lines += ["[users]", *(f'"{user}" = "{users[user]}"' for user in sorted(users))]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)  # an existing file keeps its mode through O_CREAT
        f.write("\n".join(lines) + "\n")


# ---- the Streamlit part ----------------------------------------------------------------------


def require_login() -> None:
    """Return only for an authenticated user (or an open dashboard); otherwise draw the
    login and stop the script, so nothing after this call runs."""
    config = _secrets()
    mode = login_mode(config)
    if mode == "open":
        st.sidebar.caption("No login configured: whoever reaches this address sees the data.")
        return
    if mode == "misconfigured":
        _refuse("A login is required (`require_login`), but no method is configured.")
    if mode == "oidc":
        _oidc(config)
        return
    try:
        users = configured_users(config)
    except UsersError as exc:
        _refuse(f"The dashboard's users cannot be read: {exc}.")
    _password(users, CookieSettings.of(config), ask_user=set(users) != {ADMIN})


def _secrets() -> dict[str, Any]:
    try:
        return st.secrets.to_dict()
    except FileNotFoundError:  # no secrets file at all
        return {}


def _refuse(message: str) -> NoReturn:
    st.title("oddsflow monitor")
    st.error(message)
    st.stop()


def _oidc(config: Mapping[str, Any]) -> None:
    if st.user.get("is_logged_in") is not True:  # absent or False: logged out
        if importlib.util.find_spec("authlib") is None:
            _refuse(
                'Login with the identity provider needs Authlib: pip install "streamlit[auth]".'
            )
        st.title("oddsflow monitor")
        st.write("Log in to see the markets.")
        provider = oidc_provider(config)
        st.button("Log in", on_click=st.login, args=(provider,) if provider else ())
        st.stop()
    email = st.user.get("email")
    if not email_allowed(config, email if isinstance(email, str) else None):
        st.title("oddsflow monitor")
        st.error(f"{email} may not see this dashboard.")
        st.button("Log out", on_click=st.logout)
        st.stop()
    st.sidebar.button("Log out", on_click=st.logout)


def _password(users: Mapping[str, str], cookie: CookieSettings, *, ask_user: bool) -> None:
    """The login form until a user is in (by the form, this session's earlier login or the
    browser's cookie); then who it is and a log-out button."""
    user = _logged_in(users, cookie)
    if user is not None:
        token = st.session_state.pop(HANDOFF_KEY, None)
        if token:  # the browser fetches the cookie; the script cannot set an HttpOnly one
            _post(sessions.SESSION_PATH, token)
        st.sidebar.caption(f"Logged in as **{user}**")
        st.sidebar.button("Log out", on_click=_log_out)
        return
    if st.session_state.get(LOGGED_OUT_KEY) == "clear":
        st.session_state[LOGGED_OUT_KEY] = True
        _post(sessions.LOGOUT_PATH, "")
    st.title("oddsflow monitor")
    with st.form("login"):
        name = st.text_input("User") if ask_user else ADMIN
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        if check_login(users, name, password):
            _log_in(name, users[name], cookie)
            st.rerun()
        time.sleep(FAILED_LOGIN_DELAY_S)  # slows down guessing
        st.error("Wrong user or password." if ask_user else "Wrong password.")
    st.stop()


def _logged_in(users: Mapping[str, str], cookie: CookieSettings) -> str | None:
    """Who this browser session is: its own login, else a valid cookie it came with."""
    value = st.session_state.get(SESSION_KEY)
    if value is None and not st.session_state.get(LOGGED_OUT_KEY):
        value = st.context.cookies.get(sessions.COOKIE)
    if not value or value in sessions.REVOKED:
        st.session_state.pop(SESSION_KEY, None)
        return None
    user = sessions.session_user(value, users, cookie.secret, time.time(), cookie.max_age_s)
    if user is None:  # expired, tampered with, or the user or their password changed
        st.session_state.pop(SESSION_KEY, None)
    else:
        st.session_state[SESSION_KEY] = value
    return user


def _log_in(user: str, stored: str, cookie: CookieSettings) -> None:
    expires = int(time.time()) + cookie.max_age_s
    value = sessions.sign_session(user, stored, cookie.secret, expires)
    st.session_state[SESSION_KEY] = value
    st.session_state[HANDOFF_KEY] = sessions.HANDOFFS.issue(value, cookie.max_age_s)
    st.session_state.pop(LOGGED_OUT_KEY, None)


def _log_out() -> None:
    value = st.session_state.pop(SESSION_KEY, None)
    if value:
        sessions.REVOKED.add(value)  # a copy of the cookie stops working too
    st.session_state.pop(HANDOFF_KEY, None)
    st.session_state[LOGGED_OUT_KEY] = "clear"  # the next run has the browser drop the cookie


def _post(path: str, body: str) -> None:
    """Have the browser POST `body` to one of our routes (same origin, with its cookies)."""
    script = f"fetch({path!r}, {{method: 'POST', body: {body!r}, credentials: 'same-origin'}})"
    st.html(f"<script>{script};</script>", unsafe_allow_javascript=True)


# ---- `python -m dashboard.auth hash | add-user | remove-user` ----------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dashboard.auth",
        description="Password hashes and the users file of the dashboard's login.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("hash", help="ask for a password, print a password_hash line")
    for name, what in (("add-user", "add a user or change their password (asks for it)"),
                       ("remove-user", "remove a user (their sessions end)")):  # fmt: skip
        command = commands.add_parser(name, help=what)
        command.add_argument("name", help="the user name (letters, digits, _.@-)")
        command.add_argument("--file", type=Path, required=True, help="the users file (0600)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "remove-user":
            if not remove_user(args.file, args.name):
                print(f"{args.name} is not in {args.file}", file=sys.stderr)
                return 1
            print(f"removed {args.name} from {args.file}")
            return 0
        if args.command == "add-user" and not sessions.USER_NAME.fullmatch(args.name):
            print(f"{args.name!r} is not a user name (letters, digits, _.@-)", file=sys.stderr)
            return 2
        password = getpass.getpass("dashboard password: ")
        if len(password) < 12 or password != getpass.getpass("again: "):
            print("passwords differ or are shorter than 12 characters", file=sys.stderr)
            return 1
        if args.command == "add-user":
            add_user(args.file, args.name, hash_password(password))
            print(f'{args.name} can log in; [oddsflow] users_file = "{args.file.resolve()}"')
            return 0
    except UsersError as exc:
        print(f"python -m dashboard.auth: {exc}", file=sys.stderr)
        return 1
    print("# in .streamlit/secrets.toml:")
    print("[oddsflow]")
    print(f'password_hash = "{hash_password(password)}"')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
