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

from dashboard import auth, queries
from flows.simulator import write_feed
from tests.conftest import replay, table
from tests.test_dashboard_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    METRIC,
    _free_port,
    _need_browser,
    _wait_healthy,
    metric,
    no_exception,
)

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


# ---- a real browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`oddsflow dashboard` with a password in its secrets file; its URL."""
    _need_browser()
    tmp = tmp_path_factory.mktemp("guarded")
    secrets = tmp / "secrets.toml"
    secrets.write_text(f'[oddsflow]\npassword_hash = "{STORED}"\n')
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
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
