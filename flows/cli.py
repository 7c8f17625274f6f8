"""`oddsflow`: the command line (CONTRACT section 4)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from flows.sources import FORMATS

EPILOG = """\
examples:
  oddsflow simulate --matches 20 --seed 1 --out out/feed.jsonl.gz
  oddsflow replay out/feed.jsonl.gz --db out/oddsflow.duckdb
  oddsflow dashboard --db out/oddsflow.duckdb
"""


def _replay(args: argparse.Namespace) -> int:
    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main

    from flows.progress import ProgressBar, summary
    from flows.replay import get_flow

    missing = [f for f in args.files if not f.is_file()]
    if missing:
        print(f"oddsflow replay: no such file: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    recovery = None
    if args.recovery_dir:
        args.recovery_dir.mkdir(parents=True, exist_ok=True)
        recovery = RecoveryConfig(str(args.recovery_dir))
    flow = get_flow(args.files, args.db, speed=args.speed, fmt=args.format, merge=args.merge)
    started = time.monotonic()
    with ProgressBar():
        cli_main(
            flow,
            workers_per_process=args.workers,
            epoch_interval=timedelta(seconds=args.epoch_s),
            recovery_config=recovery,
        )
    print(summary(time.monotonic() - started))
    print(f"published  {args.db}   (open it with: oddsflow dashboard --db {args.db})")
    return 0


def _simulate(argv: list[str]) -> int:
    from flows.simulator import main as simulate_main

    return simulate_main(argv)


def _dashboard(argv: list[str]) -> int:
    from dashboard.run import main as dashboard_main

    return dashboard_main(argv)


def _kafka(argv: list[str]) -> int:
    from flows.kafka_broker import main as kafka_main

    return kafka_main(argv)


def _publish(argv: list[str]) -> int:
    from flows.kafka_tools import publish_main

    return publish_main(argv)


def _tail(argv: list[str]) -> int:
    from flows.kafka_tools import tail_main

    return tail_main(argv)


# Commands with their own argument parsers, handed the rest of the command line.
DELEGATED: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "simulate": (_simulate, "write a realistic recorded feed with bets"),
    "publish": (_publish, "send a recorded feed into the Kafka feed and bets topics"),
    "kafka": (_kafka, "run a local Apache Kafka broker: up / down / status"),
    "tail": (_tail, "print the messages of an output topic as they come"),
    "dashboard": (_dashboard, "the Streamlit monitoring app over the published DuckDB file"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oddsflow",
        description="Live-betting market synchronization: replay or stream feeds into "
        "synchronized markets, bets and settlements.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    replay = sub.add_parser("replay", help="run the market-sync flow over recorded feed files")
    replay.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="native JSONL feed files (.jsonl, .gz, .bz2)",
    )
    replay.add_argument(
        "--db",
        type=Path,
        required=True,
        help="the DuckDB file to publish (read-only copy for readers); the "
        "flow writes <name>.writer.duckdb next to it",
    )
    replay.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="0 (default): as fast as possible; X: X times real time by ts",
    )
    replay.add_argument("--format", choices=FORMATS, default="auto",
                        help="input format (default: recognised from each file: native JSONL, "
                        "Betfair stream lines, or a StatsBomb events JSON array)")
    replay.add_argument("--merge", action="store_true",
                        help="read all files as one stream in event-time order (a Betfair "
                        "market with its sports-data stream); default: one partition per file")
    replay.add_argument("--workers", type=int, default=1, help="Bytewax worker threads")
    replay.add_argument(
        "--recovery-dir",
        type=Path,
        help="Bytewax recovery store (created on first use) to resume after a crash",
    )
    replay.add_argument(
        "--epoch-s",
        type=float,
        default=10.0,
        help="epoch (snapshot) interval in seconds (default 10)",
    )
    replay.set_defaults(run=_replay)
    for name, (_, help_text) in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if argv and argv[0] in DELEGATED:
        return DELEGATED[argv[0]][0](argv[1:])
    args = build_parser().parse_args(argv)
    result: int = args.run(args)
    return result
