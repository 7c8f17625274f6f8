"""`oddsflow`: the command line. The flows run here; the local tooling (simulate, kafka,
publish, tail) and the dashboard are imported only when their command runs."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from flows.sources import FORMATS

if TYPE_CHECKING:
    from bytewax.recovery import RecoveryConfig

    from connectors.kafka import KafkaSettings
    from flows.config import Settings

EPILOG = """\
examples:
  oddsflow simulate --matches 20 --seed 1 --out out/feed.jsonl.gz
  oddsflow simulate --matches 20 --seed 1 --sport mixed --out out/mixed.jsonl.gz
  oddsflow replay atp_main_2017.csv.gz --format tennis-pbp --db out/tennis.duckdb
  oddsflow replay out/feed.jsonl.gz --db out/oddsflow.duckdb
  oddsflow dashboard --db out/oddsflow.duckdb
  oddsflow --config prod.toml config show

settings: --config FILE (default ./oddsflow.toml when present; every key in
oddsflow.example.toml), overridden by ODDSFLOW_* variables, overridden by options.
"""


def _replay(args: argparse.Namespace) -> int:
    from flows.bytewax_compat import run_flow
    from flows.progress import ProgressBar, member_summary
    from flows.replay import get_flow
    from flows.runtime import freeze_startup_heap

    missing = [f for f in args.files if not f.is_file()]
    if missing:
        print(f"oddsflow replay: no such file: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    problem = _cluster_problem(args)
    if problem:
        print(f"oddsflow replay: {problem}", file=sys.stderr)
        return 2
    settings: Settings = args.settings
    kafka = None
    if args.kafka:
        kafka = _kafka_settings(settings)
        if kafka is None:
            return 1
    addresses = _cluster_setup(args)
    if args.processes > 1:
        return _local_cluster(args)
    recovery = _recovery_config(args)
    flow = get_flow(
        args.files,
        args.db,
        speed=args.speed,
        rules=settings.rules,
        publish_every_s=settings.replay.publish_s,
        fmt=args.format,
        merge=args.merge,
        kafka=kafka,
        limits=settings.limits,
    )
    problem = _start_metrics(args, "replay")
    if problem:
        print(f"oddsflow replay: {problem}", file=sys.stderr)
        return 2
    freeze_startup_heap()
    started = time.monotonic()
    with ProgressBar():
        run_flow(
            flow,
            workers=args.workers,
            process_id=args.process_id,
            addresses=addresses,
            epoch=timedelta(seconds=settings.replay.snapshot_s),
            recovery=recovery,
        )
    report = member_summary(time.monotonic() - started, args.process_id, len(addresses or ()))
    print(f"{report}\npublished  {args.db}   (open it with: oddsflow dashboard --db {args.db})")
    return 0


def _kafka_settings(settings: Settings) -> KafkaSettings | None:
    """The Kafka settings for `replay --kafka`, once the broker answered and the topics
    exist; None (the cause printed) when not."""
    from connectors.kafka import (
        KafkaConfigError,
        KafkaUnreachableError,
        TopicSetupError,
        prepare_topics,
    )

    try:
        kafka = settings.kafka.client_settings()
        prepare_topics(kafka)
    except (KafkaConfigError, KafkaUnreachableError, TopicSetupError) as exc:
        print(f"oddsflow replay: {exc}", file=sys.stderr)
        return None
    return kafka


def _live(args: argparse.Namespace) -> int:
    from connectors.kafka import KafkaConfigError
    from flows.live import serve

    problem = _cluster_problem(args)
    if problem:
        print(f"oddsflow live: {problem}", file=sys.stderr)
        return 2
    config: Settings = args.settings
    try:
        settings = config.kafka.client_settings()
    except KafkaConfigError as exc:
        print(f"oddsflow live: {exc}", file=sys.stderr)
        return 2
    addresses = _cluster_setup(args)
    if args.processes > 1:
        return _local_cluster(args)
    problem = _start_metrics(args, "live")
    if problem:
        print(f"oddsflow live: {problem}", file=sys.stderr)
        return 2
    return serve(
        settings,
        args.db,
        workers=args.workers,
        from_beginning=args.from_beginning,
        epoch_s=config.live.snapshot_s,
        group_id=args.group_id,
        rules=config.rules,
        publish_every_s=config.live.publish_s,
        limits=config.limits,
        wall_clock=not args.event_time_only,
        recovery=_recovery_config(args),
        process_id=args.process_id,
        addresses=addresses,
    )


def _start_metrics(args: argparse.Namespace, source: str) -> str | None:
    """Serve this process's metrics on `--metrics-port` (none without it); the problem
    when the port cannot be listened on."""
    if args.metrics_port is None:
        return None
    from flows.metrics import FlowCollector, MetricsPortError, serve_metrics

    lags = newest = None
    if source == "live":
        from connectors.kafka import input_lags, newest_ts

        lags, newest = input_lags, newest_ts
    collector = FlowCollector(source, args.process_id or 0, lags, newest)
    try:
        serve_metrics(args.metrics_port, collector)
    except MetricsPortError as exc:
        return str(exc)
    return None


def _cluster_problem(args: argparse.Namespace) -> str | None:
    if args.processes < 1 or args.workers < 1:
        return "--processes and --workers must be at least 1"
    if args.processes > 1 and (args.process_id is not None or args.addresses):
        return "--processes runs a cluster on this machine; --process-id/--addresses join one"
    if (args.process_id is None) != (args.addresses is None):
        return "--process-id and --addresses go together"
    if args.addresses and not 0 <= args.process_id < len(args.addresses.split(";")):
        return f"--process-id {args.process_id} is not an index of --addresses"
    return None


def _cluster_setup(args: argparse.Namespace) -> list[str] | None:
    """The cluster's addresses (None: not a member of one); the recovery store created or
    cleaned up, by the first process only (its peers wait for it to connect)."""
    addresses = args.addresses.split(";") if args.addresses else None
    if args.recovery_dir and not args.process_id:
        from flows.bytewax_compat import init_recovery

        init_recovery(args.recovery_dir, args.workers * (len(addresses or ()) or args.processes))
        _report_resume(args)
    return addresses


def _report_resume(args: argparse.Namespace) -> None:
    """Say where a run on an existing recovery store resumes (nothing for a new store)."""
    if args.command == "live":
        from flows.live import resumes_after

        unit = "input messages before the snapshotted offsets"
    else:
        from flows.replay import resumes_after

        unit = "lines read before"
    resumed = resumes_after(args.recovery_dir)
    if resumed is not None:
        epoch, skipped = resumed
        print(
            f"oddsflow {args.command}: resuming from {args.recovery_dir} (epoch {epoch}): "
            f"skipping the {skipped:,} {unit}",
            file=sys.stderr,
        )


def _recovery_config(args: argparse.Namespace) -> RecoveryConfig | None:
    """Bytewax's recovery settings from `--recovery-dir` and `--backup-s` (see
    `_recovery_options`); None without a store."""
    from bytewax.recovery import RecoveryConfig

    if not args.recovery_dir:
        return None
    return RecoveryConfig(str(args.recovery_dir), timedelta(seconds=args.backup_s))


MAX_RESTARTS = 10  # a cluster whose members keep dying gives up after this many restarts


def _local_cluster(args: argparse.Namespace) -> int:
    """`--processes N`: this command as N processes of one cluster on free localhost ports,
    as `--process-id i --addresses ...` would run them on N machines.

    With `--recovery-dir` the cluster heals itself: when a member is killed (by a signal:
    SIGKILL, the OOM killer), the others are stopped and the whole cluster starts again from
    the last snapshot (a Bytewax cluster cannot go on without a member). A member that fails
    with an error stops the command: it would fail again."""
    command = f"oddsflow {args.command}"
    for restart in range(MAX_RESTARTS + 1):
        died = _run_cluster(args)
        if died is None:
            return 0
        name, code, at = died
        if not name:  # Ctrl-C or SIGTERM: the members were told to stop
            print(f"{command}: stopped", file=sys.stderr)
            return 130
        if code > 0 or not args.recovery_dir:
            print(f"{command}: {name} failed (exit code {code})", file=sys.stderr)
            return 1
        if restart == MAX_RESTARTS:
            break
        print(
            f"{command}: {name} was killed (signal {-code}); restarting the cluster from the "
            "last snapshot",
            file=sys.stderr,
            flush=True,
        )
        from flows.bytewax_compat import drop_uncommitted_snapshots

        drop_uncommitted_snapshots(args.recovery_dir)
        _report_first_output(args.db, at, command)
    print(f"{command}: members kept dying; gave up after {MAX_RESTARTS} restarts", file=sys.stderr)
    return 1


def _run_cluster(args: argparse.Namespace) -> tuple[str, int, float] | None:
    """Run the members until all end; None when all ended well, else the first to fail:
    its name, exit code (negative: killed by that signal) and when it was seen to end (no
    name: the command was told to stop, and a member ended badly meanwhile)."""
    import multiprocessing
    import os
    import signal
    import socket
    from multiprocessing.connection import wait

    sockets = [socket.socket() for _ in range(args.processes)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    addresses = ";".join(f"127.0.0.1:{s.getsockname()[1]}" for s in sockets)
    for s in sockets:
        s.close()
    spawn = multiprocessing.get_context("spawn")
    members = [
        spawn.Process(
            target=_cluster_member,
            args=(
                argparse.Namespace(
                    **{
                        **vars(args),
                        "processes": 1,
                        "process_id": i,
                        "addresses": addresses,
                        "metrics_port": _member_port(args.metrics_port, i),
                    }
                ),
                os.getpid(),
            ),
            name=f"oddsflow-{i}",
        )
        for i in range(args.processes)
    ]
    for member in members:
        member.start()
    signals: list[int] = []

    def forward(signum: int, frame: object) -> None:
        """Ctrl-C or SIGTERM: the members stop as they would alone (each in a process
        group of its own, so this is the one signal they get); a second one kills them."""
        signals.append(signum)
        for m in members:
            if m.exitcode is None and m.pid is not None:
                os.kill(m.pid, signal.SIGTERM if len(signals) == 1 else signal.SIGKILL)

    handlers = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    died: tuple[str, int, float] | None = None
    try:
        running = list(members)
        while running and died is None:
            wait([m.sentinel for m in running])
            running = [m for m in running if m.exitcode is None]
            failed = [m for m in members if m.exitcode]
            if failed and not signals:  # the others would wait for it forever
                died = (failed[0].name, failed[0].exitcode or 0, time.time())
    finally:
        for member in members:
            if member.exitcode is None:
                member.kill() if died is not None else member.terminate()
            member.join()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    if signals and died is None and any(m.exitcode for m in members):
        died = ("", 1, time.time())  # stopped: not to be restarted
    return died


def _member_port(port: int | None, process_id: int) -> int | None:
    """Member `process_id` of a local cluster serves its metrics on `--metrics-port` plus
    its index."""
    return None if port is None else port + process_id


def _report_first_output(db: Path, since: float, command: str) -> None:
    """Print, from a thread, how long after `since` (a member's death) the restarted cluster
    committed rows again (a worker's manifest changed)."""
    import threading

    from sinks.duckdb_store import data_dir

    def watch() -> None:
        folder = data_dir(db)
        while True:
            stamps = [p.stat().st_mtime for p in folder.glob("w*.json") if p.exists()]
            if stamps and max(stamps) > since:
                print(
                    f"{command}: rows committed again {max(stamps) - since:.1f} s after the "
                    "member died",
                    file=sys.stderr,
                    flush=True,
                )
                return
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()


def _cluster_member(args: argparse.Namespace, parent: int) -> None:
    """One process of `--processes`: it ends with its parent, even a SIGKILLed one, so a
    restarted command never meets a previous cluster still writing the same files."""
    import os
    import threading

    def orphaned() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    os.setpgid(0, 0)  # signals come from the command (`_run_cluster`), once
    from flows import logs

    logs.configure()  # as the command was told (through the environment)

    threading.Thread(target=orphaned, daemon=True).start()
    raise SystemExit(args.run(args))


def _export(args: argparse.Namespace) -> int:
    import duckdb

    from sinks.duckdb_store import export

    if not args.db.is_file():
        print(f"oddsflow export: no such file: {args.db}", file=sys.stderr)
        return 2
    try:
        counts = export(args.db, args.out)
    except duckdb.Error as exc:
        print(f"oddsflow export: {args.db}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {sum(counts.values()):,} rows in {len(counts)} tables")
    return 0


def _config_show(args: argparse.Namespace) -> int:
    from flows.config import show

    print(show(args.settings, args.origin), end="")
    return 0


def _simulate(argv: list[str]) -> int:
    from tooling.simulator import main as simulate_main

    return simulate_main(argv)


def _dashboard(argv: list[str]) -> int:
    from dashboard.run import main as dashboard_main

    return dashboard_main(argv)


def _kafka(argv: list[str]) -> int:
    from tooling.kafka_broker import main as kafka_main

    return kafka_main(argv)


def _publish(argv: list[str]) -> int:
    from tooling.kafka_tools import publish_main

    return publish_main(argv)


def _tail(argv: list[str]) -> int:
    from tooling.kafka_tools import tail_main

    return tail_main(argv)


# Commands with their own argument parsers, handed the rest of the command line.
DELEGATED: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "simulate": (_simulate, "write a realistic recorded feed with bets"),
    "publish": (_publish, "send a recorded feed into the Kafka feed and bets topics"),
    "kafka": (_kafka, "run a local Apache Kafka broker: up / down / status"),
    "tail": (_tail, "print the messages of an output topic as they come"),
    "dashboard": (_dashboard, "the Streamlit monitoring app over the published DuckDB file"),
}


SECRETS_HELP = (
    "TOML file (mode 0600) of signed providers' secrets: their lines must carry a valid "
    "HMAC-SHA256 signature (default: $ODDSFLOW_SECRETS_FILE, $ODDSFLOW_SECRET_<PROVIDER>)"
)


def _recovery_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--recovery-dir",
        type=Path,
        help="Bytewax recovery store (created on first use) to resume after a crash: run "
        "the same command again",
    )
    command.add_argument(
        "--backup-s",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="with --recovery-dir: keep superseded snapshots this long, for copies of the "
        "store made elsewhere (default 0)",
    )


def _cluster_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--workers", type=int, default=1, help="Bytewax worker threads per process"
    )
    command.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="run as a cluster of N processes on this machine (default 1); with "
        "--recovery-dir it restarts from the last snapshot when a process is killed",
    )
    command.add_argument(
        "--process-id",
        type=int,
        metavar="I",
        help="a cluster over several machines: this process's index in --addresses",
    )
    command.add_argument(
        "--addresses",
        metavar="HOST:PORT;...",
        help="a cluster over several machines: every process's address, in id order, "
        "separated by ';' (run the same command on each, with its own --process-id)",
    )
    command.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on http://0.0.0.0:PORT/metrics (with --processes N: "
        "process i on PORT+i); docs/production.md lists them",
    )


CONFIG_HELP = (
    "TOML file of settings (default: ./oddsflow.toml when present; every key in "
    "oddsflow.example.toml); ODDSFLOW_* variables and options override it"
)


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    from flows.logs import FORMATS, LEVELS

    parser.add_argument("--version", action="store_true", help="print the versions and exit")
    parser.add_argument("--config", type=Path, metavar="FILE", help=CONFIG_HELP)
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="set one key of the config file, over the file and the environment "
        "(--set rules.min_suspension_ms=5000; repeatable)",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LEVELS,
        help="log records from this level on (default WARNING, or ODDSFLOW_LOG_LEVEL)",
    )
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        help="text (default, or ODDSFLOW_LOG_FORMAT) or json: one object per line "
        "(time, level, logger, message, match_id)",
    )


def _global_options(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The options before the command (`--version`, `--config`, `--set`, `--log-level`,
    `--log-format`), and the rest of the command line."""
    parser = argparse.ArgumentParser(prog="oddsflow", add_help=False)
    _add_global_options(parser)
    head = 0
    while head < len(argv) and argv[head].startswith("--") and argv[head] != "--help":
        head += 1 if argv[head] == "--version" or "=" in argv[head] else 2
    return parser.parse_args(argv[:head]), argv[head:]


def version_line() -> str:
    """`oddsflow --version`: this package's, Bytewax's and Python's versions."""
    import platform
    from importlib import metadata

    def of(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return (
        f"oddsflow {of('oddsflow')} (bytewax {of('bytewax')}, Python {platform.python_version()})"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oddsflow",
        description="Live-betting market synchronization: replay or stream feeds into "
        "synchronized markets, bets and settlements.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_global_options(parser)  # listed in --help; read by `_global_options`
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
        help="the DuckDB file to publish (views over every worker's rows, for readers); "
        "the workers write their rows in <name>.data/ next to it",
    )
    replay.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="0 (default): as fast as possible; X: X times real time by ts",
    )
    replay.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="input format (default: recognised from each file: native JSONL, "
        "Betfair stream lines, a StatsBomb events JSON array, or point-by-point tennis "
        "CSV, tennis-pbp)",
    )
    replay.add_argument(
        "--merge",
        action="store_true",
        help="read all files as one stream in event-time order (a Betfair "
        "market with its sports-data stream); default: one partition per file",
    )
    _cluster_options(replay)
    replay.add_argument(
        "--snapshot-s",
        "--epoch-s",
        dest="epoch_s",
        type=float,
        metavar="SECONDS",
        help="epoch length: at the end of each the DuckDB sink flushes and, with "
        "--recovery-dir, the state is snapshotted, so a resume redoes at most one "
        "(default: replay.snapshot_s, 10)",
    )
    _recovery_options(replay)
    replay.add_argument(
        "--kafka",
        metavar="BOOTSTRAP",
        help="also publish the output rows to the Kafka output topics (prefix and "
        "security: the config file's [kafka], or $ODDSFLOW_KAFKA_PREFIX)",
    )
    replay.add_argument("--secrets", type=Path, metavar="FILE", help=SECRETS_HELP)
    replay.set_defaults(run=_replay)
    live = sub.add_parser("live", help="run the market-sync flow on the Kafka feed and bets topics")
    live.add_argument(
        "--kafka",
        metavar="BOOTSTRAP",
        help="bootstrap servers (default: $ODDSFLOW_KAFKA, kafka.bootstrap of the config "
        "file, bootstrap.servers of the --kafka-config file, 127.0.0.1:9092)",
    )
    live.add_argument(
        "--kafka-config",
        type=Path,
        metavar="FILE",
        help="librdkafka .properties file (security.protocol, sasl.*, ssl.*, ...)",
    )
    live.add_argument(
        "--db",
        type=Path,
        required=True,
        help="the DuckDB file to publish (views over every worker's rows, for readers); "
        "the workers write their rows in <name>.data/ next to it",
    )
    _cluster_options(live)
    live.add_argument("--secrets", type=Path, metavar="FILE", help=SECRETS_HELP)
    start = live.add_mutually_exclusive_group()
    start.add_argument(
        "--from-beginning",
        dest="from_beginning",
        action="store_true",
        default=True,
        help="read the input topics from their first message (default: the state of "
        "every match and wallet is rebuilt from its lines)",
    )
    start.add_argument(
        "--from-end",
        dest="from_beginning",
        action="store_false",
        help="read only lines published from now on",
    )
    live.add_argument(
        "--snapshot-s",
        "--epoch-s",
        dest="epoch_s",
        type=float,
        metavar="SECONDS",
        help="epoch length: at the end of each the DuckDB sink flushes and, with "
        "--recovery-dir, the state and input offsets are snapshotted (default: "
        "live.snapshot_s, 1)",
    )
    _recovery_options(live)
    live.add_argument(
        "--group-id",
        default="oddsflow-live",
        help="consumer group id (default oddsflow-live): the offsets read are committed to it "
        "after each snapshot, so Kafka's tools show the lag; a run never resumes from them",
    )
    live.add_argument(
        "--event-time-only",
        action="store_true",
        help="no wall-clock timers: provider silence and due reopenings are noticed at the "
        "match's next line, as in replay (the output then depends only on the lines)",
    )
    live.set_defaults(run=_live)
    export = sub.add_parser(
        "export",
        help="copy a published DuckDB file into a self-contained one (tables, not views)",
        description="The published file is views over the flow's segments (<name>.data/ "
        "beside it): this writes every table's rows into a new DuckDB file of its own, to "
        "move, share or modify.",
    )
    export.add_argument("--db", type=Path, required=True, help="the published file")
    export.add_argument("--out", type=Path, required=True, help="the DuckDB file to write")
    export.set_defaults(run=_export)
    config = sub.add_parser("config", help="the settings: config show")
    config_sub = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = config_sub.add_parser(
        "show",
        help="print the effective settings as TOML, where each came from, secrets masked",
    )
    show.add_argument("--config", type=Path, metavar="FILE", help=CONFIG_HELP)
    show.set_defaults(run=_config_show)
    for name, (_, help_text) in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    from flows import config, logs
    from operators.parse import use_limits

    argv = sys.argv[1:] if argv is None else argv
    try:
        options, argv = _global_options(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if options.version:
        print(version_line())
        return 0
    delegated = bool(argv) and argv[0] in DELEGATED
    args = argparse.Namespace() if delegated else build_parser().parse_args(argv)
    try:
        path = getattr(args, "config", None) or options.config
        flags = {**config.flags_of(options), **config.flags_of(args, args.__dict__.get("command"))}
        settings, origin = config.resolve(path, flags=flags)
        config.choose(path, config.flags_of(options))  # for the delegated commands
        logs.configure(settings.logging.level, settings.logging.format, environ={})
    except (config.ConfigError, logs.LogOptionError) as exc:
        print(f"oddsflow: {exc}", file=sys.stderr)
        return 2
    use_limits(settings.limits)  # for the commands that read feed files (publish)
    if delegated:
        return DELEGATED[argv[0]][0](argv[1:])
    args.settings, args.origin = settings, origin
    if getattr(args, "secrets", None) is not None:
        from operators.signing import KeyringError, use_secrets_file

        try:
            use_secrets_file(args.secrets)
        except KeyringError as exc:
            print(f"oddsflow {args.command}: {exc}", file=sys.stderr)
            return 2
    result: int = args.run(args)
    return result
