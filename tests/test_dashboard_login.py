"""The dashboard behind its login: with a login configured, no page shows any data until the
user is authenticated, under Streamlit's AppTest (password and OpenID Connect modes) and in
a real headless Chromium (password mode)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import auth, queries, sessions
from tests.conftest import replay, table
from tests.test_dashboard_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    METRIC,
    _free_port,
    _need_browser,
    _stop,
    _wait_healthy,
    metric,
    no_exception,
)
from tooling.simulator import write_feed

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboard" / "app.py"
PASSWORD = "correct horse battery staple"
STORED = auth.hash_password(PASSWORD, iterations=2_000)  # cheap for tests; real: 600 000
OIDC = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "a cookie secret for the tests",
    "client_id": "oddsflow",
    "client_secret": "not a real one",
    "server_metadata_url": "https://idp.example/.well-known/openid-configuration",
}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("login")
    feed = tmp / "feed.jsonl"
    write_feed(feed, matches=2, seed=3)
    return replay([feed], tmp / "login.duckdb")


Page = Callable[..., AppTest]


@pytest.fixture
def page(db: Path, monkeypatch: pytest.MonkeyPatch) -> Page:
    """`page(secrets, user=None)`: the overview over `db` with these Streamlit secrets."""
    monkeypatch.setenv(queries.DB_ENV, str(db))
    monkeypatch.setattr(auth, "FAILED_LOGIN_DELAY_S", 0.0)

    def run(secrets: dict[str, Any], user: dict[str, Any] | None = None) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.secrets.update(secrets)
        if user is not None:
            at.user = user
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return run


def shows_data(at: AppTest, db: Path) -> bool:
    """Does the page show anything of the database: a metric, a table, a chart, a match?"""
    teams = {name for row in table(db, "SELECT home, away FROM matches") for name in row}
    kinds = ("markdown", "caption", "title")
    text = " ".join(str(getattr(e, "value", "")) for kind in kinds for e in at.get(kind))
    return bool(
        at.metric
        or at.dataframe
        or at.get("vega_lite_chart")
        or any(team in text for team in teams)
        or str(db) in text
    )


# ---- password -----------------------------------------------------------------------------------


def test_password_login_gates_every_page(page: Page, db: Path) -> None:
    at = page({"oddsflow": {"password_hash": STORED}})

    assert not shows_data(at, db)
    assert [i.label for i in at.text_input] == ["Password"]
    at.text_input[0].input("not the password")
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["Wrong password."]
    assert not shows_data(at, db)

    at.text_input[0].input(PASSWORD)
    at.button[0].click().run()
    assert shows_data(at, db)
    assert "Accepted lines" in {m.label for m in at.metric}

    at.sidebar.button[0].click().run()  # log out
    assert not shows_data(at, db)


@pytest.mark.parametrize("page_name", ["match", "markets", "rejects"])
def test_no_page_opens_before_the_login(page: Page, db: Path, page_name: str) -> None:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.secrets["oddsflow"] = {"password_hash": STORED}
    at.query_params["page"] = page_name
    at.run()

    assert not shows_data(at, db)


def test_a_login_required_but_not_configured_shows_nothing(page: Page, db: Path) -> None:
    at = page({"oddsflow": {"require_login": True}})

    assert not shows_data(at, db)
    assert "no method is configured" in at.error[0].value


def test_without_a_login_configured_the_dashboard_is_open_and_says_so(page: Page, db: Path) -> None:
    at = page({})

    assert shows_data(at, db)
    assert any("No login configured" in c.value for c in at.sidebar.caption)


# ---- OpenID Connect ------------------------------------------------------------------------------


def test_oidc_shows_only_the_login_until_the_provider_says_who(page: Page, db: Path) -> None:
    logged_out = page({"auth": OIDC})

    assert not shows_data(logged_out, db)
    if auth.importlib.util.find_spec("authlib") is None:
        assert "Authlib" in logged_out.error[0].value
    else:
        assert [b.label for b in logged_out.button] == ["Log in"]

    logged_in = page({"auth": OIDC}, user={"is_logged_in": True, "email": "ops@example.com"})
    assert shows_data(logged_in, db)
    assert [b.label for b in logged_in.sidebar.button] == ["Log out"]


def test_oidc_allowlist(page: Page, db: Path) -> None:
    secrets = {"auth": OIDC, "oddsflow": {"allowed_emails": ["Ops@Example.com"]}}
    stranger = page(secrets, user={"is_logged_in": True, "email": "eve@example.com"})
    ops = page(secrets, user={"is_logged_in": True, "email": "ops@example.com"})

    assert not shows_data(stranger, db)
    assert "may not see this dashboard" in stranger.error[0].value
    assert shows_data(ops, db)


# ---- the pure part -------------------------------------------------------------------------------


def test_password_hashes() -> None:
    stored = auth.hash_password(PASSWORD, iterations=1_000)

    assert stored.startswith("pbkdf2_sha256$1000$") and PASSWORD not in stored
    assert auth.password_matches(PASSWORD, stored)
    assert not auth.password_matches(PASSWORD + " ", stored)
    assert not auth.password_matches("", stored)
    assert stored != auth.hash_password(PASSWORD, iterations=1_000)  # salted
    for broken in ("", "plain", "md5$1$aa$bb", "pbkdf2_sha256$x$aa$bb", "pbkdf2_sha256$1$!$!"):
        assert not auth.password_matches(PASSWORD, broken)


def test_login_modes() -> None:
    assert auth.login_mode({}) == "open"
    assert auth.login_mode({"oddsflow": {"password_hash": STORED}}) == "password"
    assert auth.login_mode({"auth": OIDC, "oddsflow": {"password_hash": STORED}}) == "oidc"
    assert auth.login_mode({"oddsflow": {"require_login": True}}) == "misconfigured"
    assert auth.oidc_provider({"auth": {**OIDC, "google": {"client_id": "x"}}}) == "google"
    assert auth.oidc_provider({"auth": OIDC}) is None


def test_hash_command_prints_a_line_to_paste(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(auth.getpass, "getpass", lambda prompt: PASSWORD)
    monkeypatch.setattr(auth, "ITERATIONS", 1_000)

    assert auth.main(["hash"]) == 0
    out = capsys.readouterr().out
    stored = out.split('password_hash = "')[1].split('"')[0]
    assert auth.password_matches(PASSWORD, stored) and PASSWORD not in out


def test_session_cookie_values_verify_only_untouched_and_in_time() -> None:
    users = {"alice": STORED, "bob": auth.hash_password("bob's password", iterations=1_000)}
    secret, now, day = b"k" * 32, 1_800_000_000.0, 86_400.0
    value = sessions.sign_session("alice", STORED, secret, int(now) + 3600)

    assert sessions.session_user(value, users, secret, now, day) == "alice"
    assert value.startswith("alice.") and STORED not in value and STORED.split("$")[-1] not in value
    user, expires, mac = value.split(".")
    assert sessions.session_user(f"bob.{expires}.{mac}", users, secret, now, day) is None
    assert sessions.session_user(f"alice.{int(expires) + 1}.{mac}", users, secret, now, day) is None
    flipped = mac[:-1] + ("1" if mac[-1] == "0" else "0")  # STORED's salt is random: so is mac
    assert sessions.session_user(f"{user}.{expires}.{flipped}", users, secret, now, day) is None
    assert sessions.session_user(value, users, b"another key" * 3, now, day) is None
    assert sessions.session_user(value, users, secret, now + 3600, day) is None  # expired
    assert sessions.session_user(value, users, secret, now, 60) is None  # beyond a lifetime
    changed = {**users, "alice": auth.hash_password(PASSWORD, iterations=2_000)}
    assert sessions.session_user(value, changed, secret, now, day) is None  # new password
    assert sessions.session_user(value, {"bob": users["bob"]}, secret, now, day) is None
    for broken in ("", "alice", "alice.x.y", f"alice.{expires}", "é.1.é", f"alice.-1.{mac}"):
        assert sessions.session_user(broken, users, secret, now, day) is None
    dotted = sessions.sign_session("a.b", STORED, secret, int(now) + 60)
    assert sessions.session_user(dotted, {"a.b": STORED}, secret, now, day) == "a.b"


def test_a_cookie_handoff_token_works_once() -> None:
    handoffs = sessions.Handoffs()
    token = handoffs.issue("alice.1.abc", 3600)

    assert handoffs.take(token) == ("alice.1.abc", 3600)
    assert handoffs.take(token) is None
    assert handoffs.take("a guess") is None


def test_users_file_add_change_remove(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    alice, bob = (auth.hash_password(p, iterations=1_000) for p in ("alice pw", "bob pw"))
    auth.add_user(path, "alice", alice)
    auth.add_user(path, "bob", bob)

    assert path.stat().st_mode & 0o777 == 0o600
    assert auth.read_users_file(path) == {"alice": alice, "bob": bob}
    auth.add_user(path, "alice", bob)  # a new password
    assert auth.read_users_file(path)["alice"] == bob
    assert auth.remove_user(path, "bob") and not auth.remove_user(path, "bob")
    assert auth.read_users_file(path) == {"alice": bob}
    path.chmod(0o644)
    with pytest.raises(auth.UsersError, match="chmod 600"):
        auth.read_users_file(path)


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"al ice": STORED}, "is not a user name"),
        ({"": STORED}, "is not a user name"),
        ({"alice": "plain text"}, "is not a pbkdf2_sha256 hash"),
        ({"alice": 7}, "is not a pbkdf2_sha256 hash"),
        (["alice"], "expected a table"),
    ],
)
def test_users_that_cannot_log_in_are_refused(table: object, problem: str) -> None:
    with pytest.raises(auth.UsersError, match=problem) as refused:
        auth.parse_users(table)
    assert STORED not in str(refused.value)


def test_configured_users_from_file_inline_and_the_single_password(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    auth.add_user(path, "alice", STORED)
    bob = auth.hash_password("bob pw", iterations=1_000)

    both = {"users_file": str(path), "users": {"bob": bob}, "password_hash": STORED}
    assert auth.configured_users({"oddsflow": both}) == {
        "alice": STORED,
        "bob": bob,
        "admin": STORED,
    }
    assert auth.configured_users({"oddsflow": {"password_hash": STORED}}) == {"admin": STORED}
    assert auth.login_mode({"oddsflow": {"users_file": str(path)}}) == "password"
    with pytest.raises(auth.UsersError, match="both in the users file"):
        auth.configured_users({"oddsflow": {"users_file": str(path), "users": {"alice": bob}}})
    with pytest.raises(auth.UsersError, match="No such file"):
        auth.configured_users({"oddsflow": {"users_file": str(tmp_path / "missing.toml")}})
    assert auth.check_login({"alice": STORED}, "alice", PASSWORD)
    assert not auth.check_login({"alice": STORED}, "alice", "wrong")
    assert not auth.check_login({"alice": STORED}, "mallory", PASSWORD)


def test_user_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(auth.getpass, "getpass", lambda prompt: PASSWORD)
    monkeypatch.setattr(auth, "ITERATIONS", 1_000)
    path = tmp_path / "users.toml"

    assert auth.main(["add-user", "alice", "--file", str(path)]) == 0
    assert auth.main(["add-user", "bob", "--file", str(path)]) == 0
    assert auth.main(["add-user", "no way", "--file", str(path)]) == 2
    users = auth.read_users_file(path)
    assert set(users) == {"alice", "bob"} and auth.password_matches(PASSWORD, users["bob"])
    assert PASSWORD not in capsys.readouterr().out + path.read_text()
    assert auth.main(["remove-user", "bob", "--file", str(path)]) == 0
    assert auth.main(["remove-user", "bob", "--file", str(path)]) == 1
    assert set(auth.read_users_file(path)) == {"alice"}


def test_named_users_log_in_by_name_and_see_who_they_are(page: Page, db: Path) -> None:
    bob = auth.hash_password("bob's password", iterations=2_000)
    at = page({"oddsflow": {"users": {"alice": STORED, "bob": bob}, "cookie_secret": "k" * 20}})

    assert [i.label for i in at.text_input] == ["User", "Password"]
    at.text_input[0].input("bob")
    at.text_input[1].input(PASSWORD)  # alice's password
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["Wrong user or password."]
    assert not shows_data(at, db)

    at.text_input[0].input("alice")
    at.text_input[1].input(PASSWORD)
    at.button[0].click().run()
    assert shows_data(at, db)
    assert "Logged in as **alice**" in [c.value for c in at.sidebar.caption]
    assert STORED not in str(at.session_state[auth.SESSION_KEY])

    at.sidebar.button[0].click().run()  # log out
    assert not shows_data(at, db)


def test_an_unreadable_users_file_shows_an_error_and_no_data(
    page: Page, db: Path, tmp_path: Path
) -> None:
    at = page({"oddsflow": {"users_file": str(tmp_path / "missing.toml")}})

    assert not shows_data(at, db)
    assert "users cannot be read" in at.error[0].value


# ---- a real browser ------------------------------------------------------------------------------


def _serve(db: Path, tmp: Path, secrets_text: str) -> Iterator[str]:
    """`oddsflow dashboard` over `db` with these Streamlit secrets; its URL."""
    _need_browser()
    secrets = tmp / "secrets.toml"
    secrets.write_text(secrets_text)
    secrets.chmod(0o600)
    port = _free_port()
    options = ["--server.port", str(port), "--server.headless", "true"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows", "dashboard", "--db", str(db), *options,
         "--secrets.files", str(secrets)],
        cwd=ROOT,
        stdout=(tmp / "dashboard.log").open("wb"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def guarded(db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`oddsflow dashboard` with a password in its secrets file; its URL."""
    yield from _serve(
        db, tmp_path_factory.mktemp("guarded"), f'[oddsflow]\npassword_hash = "{STORED}"\n'
    )


@pytest.mark.browser
def test_browser_sees_no_data_before_the_login(guarded: str, db: Path) -> None:
    from playwright.sync_api import sync_playwright

    teams = {name for row in table(db, "SELECT home, away FROM matches") for name in row}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for path in ("/", "/rejects"):  # AppTest checks every page
                page = browser.new_page()
                page.goto(guarded + path)
                page.get_by_label("Password", exact=True).wait_for(timeout=30_000)
                time.sleep(0.5)  # a page that leaked would have drawn by now
                no_exception(page)
                body = page.inner_text("body")
                assert page.locator(METRIC).count() == 0, path
                assert not any(team in body for team in teams), path
                assert str(db) not in body, path
                page.close()

            page = browser.new_page()
            page.goto(guarded)
            page.get_by_label("Password", exact=True).fill("wrong password")
            page.get_by_role("button", name="Log in").click()
            page.get_by_text("Wrong password.").wait_for(timeout=30_000)
            assert page.locator(METRIC).count() == 0
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            page.locator(METRIC).first.wait_for(timeout=30_000)
            no_exception(page)
            lines = table(db, "SELECT count(*) FROM feed_events")[0][0]
            deadline = time.monotonic() + 30
            while metric(page, "Accepted lines") != f"{lines:,}" and time.monotonic() < deadline:
                time.sleep(0.5)
            assert metric(page, "Accepted lines") == f"{lines:,}"
        finally:
            browser.close()


# ---- named users and the lasting login, in a real browser ---------------------------------------

ALICE = "alice's long password"
BOB = "bob's password, also long"
COOKIE_SECRET = "the cookie secret of the tests"
HOURS = 2.0


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("users") / "users.toml"
    auth.add_user(path, "alice", auth.hash_password(ALICE, iterations=2_000))
    auth.add_user(path, "bob", auth.hash_password(BOB, iterations=2_000))
    return path


@pytest.fixture(scope="module")
def named(db: Path, users_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`oddsflow dashboard` with a users file and a cookie secret; its URL."""
    yield from _serve(
        db,
        tmp_path_factory.mktemp("named"),
        f'[oddsflow]\nusers_file = "{users_file}"\ncookie_secret = "{COOKIE_SECRET}"\n'
        f"session_hours = {HOURS}\n",
    )


def _log_in(page: Any, user: str, password: str) -> None:
    page.get_by_label("User", exact=True).fill(user)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()


def _shows_login(page: Any) -> None:
    page.get_by_label("Password", exact=True).wait_for(timeout=30_000)
    time.sleep(0.5)  # a page that leaked would have drawn by now
    assert page.locator(METRIC).count() == 0


def _shows_data_as(page: Any, user: str) -> None:
    page.locator(METRIC).first.wait_for(timeout=30_000)
    page.get_by_text(f"Logged in as {user}").wait_for(timeout=10_000)
    assert page.get_by_label("Password", exact=True).count() == 0
    no_exception(page)


def _session_cookie(context: Any, present: bool = True) -> dict[str, Any] | None:
    """The browser's session cookie, once it is `present` (or gone); set by a fetch."""
    deadline = time.monotonic() + 15
    while True:
        found = [c for c in context.cookies() if c["name"] == sessions.COOKIE]
        if bool(found) == present or time.monotonic() > deadline:
            return found[0] if found else None
        time.sleep(0.2)


@pytest.mark.browser
def test_a_named_login_survives_a_reload_and_ends_with_the_logout(
    named: str, users_file: Path
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            page = context.new_page()
            page.goto(named)
            _log_in(page, "alice", BOB)  # bob's password is not alice's
            page.get_by_text("Wrong user or password.").wait_for(timeout=30_000)
            _shows_login(page)
            _log_in(page, "alice", ALICE)
            _shows_data_as(page, "alice")

            cookie = _session_cookie(context)
            assert cookie is not None, "no session cookie after the login"
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            assert cookie["value"].startswith("alice.")
            lifetime = cookie["expires"] - time.time()
            assert HOURS * 3600 - 120 < lifetime <= HOURS * 3600 + 5
            stored = auth.read_users_file(users_file)["alice"]
            for secret in (stored, stored.split("$")[-1], COOKIE_SECRET, "pbkdf2"):
                assert secret not in cookie["value"]
            assert page.evaluate("document.cookie").find(sessions.COOKIE) == -1  # HttpOnly

            page.reload()
            _shows_data_as(page, "alice")
            other_tab = context.new_page()
            other_tab.goto(named + "/rejects")
            _shows_data_as(other_tab, "alice")
            other_tab.close()

            page.get_by_role("button", name="Log out").click()
            _shows_login(page)
            assert _session_cookie(context, present=False) is None
            page.reload()
            _shows_login(page)

            # A copy of the logged-out cookie is worth nothing either.
            copied = browser.new_context()
            copied.add_cookies([_cookie(cookie, named)])
            stale = copied.new_page()
            stale.goto(named)
            _shows_login(stale)
            copied.close()
        finally:
            browser.close()


def _cookie(cookie: dict[str, Any], url: str, value: str | None = None) -> dict[str, Any]:
    return {"name": cookie["name"], "value": value or cookie["value"], "url": url}


@pytest.mark.browser
def test_a_tampered_or_expired_cookie_is_refused(named: str, users_file: Path) -> None:
    from playwright.sync_api import sync_playwright

    stored = auth.read_users_file(users_file)
    secret = COOKIE_SECRET.encode()
    expires = int(time.time()) + 3600
    good = sessions.sign_session("bob", stored["bob"], secret, expires)
    mac = good.rsplit(".", 1)[1]
    refused = {
        "another user": f"alice.{expires}.{mac}",
        "a later expiry": f"bob.{expires + 60}.{mac}",
        "another secret": sessions.sign_session("bob", stored["bob"], b"x" * 30, expires),
        "expired": sessions.sign_session("bob", stored["bob"], secret, int(time.time()) - 1),
        "too far ahead": sessions.sign_session(
            "bob", stored["bob"], secret, int(time.time() + HOURS * 3600 + 600)
        ),
        "an old password": sessions.sign_session(
            "bob", auth.hash_password(BOB, iterations=2_000), secret, expires
        ),
        "no user": "bob",
    }
    cookie = {"name": sessions.COOKIE}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for why, value in refused.items():
                context = browser.new_context()
                context.add_cookies([_cookie(cookie, named, value)])
                page = context.new_page()
                page.goto(named)
                try:
                    _shows_login(page)
                except AssertionError as exc:
                    raise AssertionError(f"a cookie with {why} let the browser in") from exc
                context.close()
            context = browser.new_context()  # the same cookie, untouched, gets in
            context.add_cookies([_cookie(cookie, named, good)])
            page = context.new_page()
            page.goto(named)
            _shows_data_as(page, "bob")
        finally:
            browser.close()
