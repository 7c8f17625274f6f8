"""The dashboard's login: nothing but a login form until the user is authenticated.

Configured in Streamlit's secrets (`.streamlit/secrets.toml` where the dashboard starts,
`~/.streamlit/secrets.toml`, or `--secrets.files PATH`), one of:

- **OpenID Connect** (an identity provider: Google, Microsoft Entra, Okta, Auth0, ...):
  an `[auth]` table as Streamlit's `st.login` expects it (`redirect_uri`, `cookie_secret`,
  `client_id`, `client_secret`, `server_metadata_url`, or one `[auth.<provider>]` table per
  provider). Optionally `[oddsflow] allowed_emails = ["ops@example.com", ...]`. Needs
  Authlib (`pip install "streamlit[auth]"`).
- **A shared password**: `[oddsflow] password_hash = "pbkdf2_sha256$..."`, made with
  `python -m dashboard.auth hash` (it asks for the password, prints the line). The hash is
  salted PBKDF2-HMAC-SHA256; the check is constant-time.

With neither, the dashboard is open (it serves on 127.0.0.1 unless told otherwise) and says
so in its sidebar. A configuration that asks for a login it cannot do (`[oddsflow]
require_login = true` without a method, OIDC without Authlib) shows an error and no data.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import importlib.util
import secrets
import sys
import time
from collections.abc import Mapping
from typing import Any, Literal

import streamlit as st

Mode = Literal["oidc", "password", "open", "misconfigured"]
SCHEME = "pbkdf2_sha256"
ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256
FAILED_LOGIN_DELAY_S = 1.0
SESSION_KEY = "oddsflow_login"


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
    if ours.get("password_hash"):
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
    else:
        _password(str(config["oddsflow"]["password_hash"]))


def _secrets() -> dict[str, Any]:
    try:
        return st.secrets.to_dict()
    except FileNotFoundError:  # no secrets file at all
        return {}


def _refuse(message: str) -> None:
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


def _password(stored: str) -> None:
    if st.session_state.get(SESSION_KEY):
        st.sidebar.button("Log out", on_click=_log_out)
        return
    st.title("oddsflow monitor")
    with st.form("login"):
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        if password_matches(password, stored):
            st.session_state[SESSION_KEY] = True
            st.rerun()
        time.sleep(FAILED_LOGIN_DELAY_S)  # slows down guessing
        st.error("Wrong password.")
    st.stop()


def _log_out() -> None:
    st.session_state.pop(SESSION_KEY, None)


# ---- `python -m dashboard.auth hash` ---------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["hash"]:
        print("usage: python -m dashboard.auth hash   (asks for the password)", file=sys.stderr)
        return 2
    password = getpass.getpass("dashboard password: ")
    if len(password) < 12 or password != getpass.getpass("again: "):
        print("passwords differ or are shorter than 12 characters", file=sys.stderr)
        return 1
    print("# in .streamlit/secrets.toml:")
    print("[oddsflow]")
    print(f'password_hash = "{hash_password(password)}"')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
