"""`oddsflow dashboard --db PATH [streamlit options]`: the Streamlit app over the published file.

Runs `streamlit run dashboard/server.py` (dashboard/app.py with the login cookie's routes) in
this process, with the database path handed to the app as the `ODDSFLOW_DB` environment
variable. Every other option goes to Streamlit as is.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dashboard.queries import DB_ENV, is_writer_file

APP = Path(__file__).with_name("server.py")  # app.py with the login cookie routes
# Streamlit settings we default differently; the command line wins when it names them. Serving
# on loopback only also keeps Streamlit from looking up the machine's external IP.
DEFAULTS = {
    "--server.address": "127.0.0.1",
    "--browser.gatherUsageStats": "false",
    "--server.fileWatcherType": "none",
    "--client.toolbarMode": "viewer",
}

EPILOG = """\
Any other option goes to `streamlit run` (see `streamlit run --help`), e.g.:
  oddsflow dashboard --db out/oddsflow.duckdb --server.port 8601 --server.headless true
It serves on 127.0.0.1 unless told otherwise (--server.address 0.0.0.0 for other machines).

The dashboard reads only the published file the flow keeps at --db (views over every
worker's rows in <name>.data/ beside it), opening it afresh on each refresh. It may be
started before the flow: it waits for the file and shows how to produce data.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oddsflow dashboard",
        description="The Streamlit monitoring app over the DuckDB file a replay or live flow "
        "publishes: ingestion and rejects, each match's timeline with its market status "
        "and prices, markets and risk, the rejected lines.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--db",
        type=Path,
        required=True,
        metavar="PATH",
        help="the published DuckDB file (the --db of `oddsflow replay` / `oddsflow live`)",
    )
    return parser


def streamlit_args(extra: list[str]) -> list[str]:
    """`streamlit run` arguments: the app, our defaults unless given, then `extra`."""
    named = {arg.split("=", 1)[0] for arg in extra if arg.startswith("--")}
    defaults = [f"{k}={v}" for k, v in DEFAULTS.items() if k not in named]
    return ["run", str(APP), *defaults, *extra]


def main(argv: list[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    db: Path = args.db.expanduser().resolve()
    if is_writer_file(db):
        print(
            f"oddsflow dashboard: {db} is the flow's private writer file; "
            "pass the published file (the same path without `.writer`).",
            file=sys.stderr,
        )
        return 2
    os.environ[DB_ENV] = str(db)

    import click
    from streamlit.web import cli as streamlit_cli

    try:
        streamlit_cli.main.main(
            args=streamlit_args(extra), prog_name="oddsflow dashboard", standalone_mode=False
        )
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    return 0
