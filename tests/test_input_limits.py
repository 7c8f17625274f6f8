"""Input limits per format: a native line 64 KiB, a Betfair stream line 8 MiB (an image of
many markets), a StatsBomb file 32 MiB; over its limit, a line (file) is a `line_too_long`
reject and the flow goes on. And a Betfair market whose image is lost says so in every
delta (`unknown_market`) instead of vanishing.

Data: ../shared/data (never copied into the repo); see its README for the sources.
"""

from __future__ import annotations

import bz2
import gzip
import heapq
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flows import config
from flows.sources import read_limit, read_lines
from operators.engine import LocalEngine
from operators.parse import Limits
from operators.rows import MarketStatusRow
from tests.conftest import replay, shared_data, table

MARKET_FILES = ("1.200806927.gz", "1.166811431.bz2", "1.197931750.gz")
GREYHOUNDS = "1.197931750.gz"
NATIVE_LIMIT = 65_536
BETFAIR_LIMIT = 8 * 1024 * 1024
SNAPSHOT_EVERY = 1000  # lines


def raw_lines(name: str) -> list[bytes]:
    path = shared_data("betfair", name)
    opener = bz2.open if path.suffix == ".bz2" else gzip.open
    with opener(path, "rb") as file:
        return [line.rstrip(b"\r\n") for line in file if line.strip()]


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# ---- an independent reading of the raw JSON: a market's cache, and what it shows ------------

RunnerKey = tuple[int, float]


@dataclass
class MarketCache:
    """One market as its raw lines say: the latest definition, every runner's ladders."""

    definition: dict[str, Any] = field(default_factory=dict)
    ladders: dict[RunnerKey, dict[str, dict[float, float]]] = field(default_factory=dict)
    ltp: dict[RunnerKey, float] = field(default_factory=dict)

    def apply(self, change: dict[str, Any]) -> None:
        if change.get("img"):
            self.ladders, self.ltp = {}, {}
        self.definition = change.get("marketDefinition", self.definition)
        for rc in change.get("rc", []):
            key = (rc["id"], rc.get("hc", 0.0))
            runner = self.ladders.setdefault(key, {"atb": {}, "atl": {}, "trd": {}})
            for side, ladder in runner.items():
                if side == "trd" and rc.get(side) == []:  # an empty traded ladder clears it
                    ladder.clear()
                for price, size in rc.get(side, []):
                    if size:
                        ladder[price] = size
                    else:
                        ladder.pop(price, None)
            if "ltp" in rc:
                self.ltp[key] = rc["ltp"]

    def image(self, market_id: str) -> dict[str, Any]:
        """The market change a SUB_IMAGE carries for this cache: definition, full ladders."""
        runners = []
        for key, sides in self.ladders.items():
            rc: dict[str, Any] = {"id": key[0], "hc": key[1]}
            rc |= {side: [[p, s] for p, s in ladder.items()] for side, ladder in sides.items()}
            if key in self.ltp:
                rc["ltp"] = self.ltp[key]
            runners.append(rc)
        return {"id": market_id, "img": True, "marketDefinition": self.definition, "rc": runners}

    def shown(self) -> tuple[str, str | None]:
        """(status, winner) oddsflow shows for this definition: CLOSED with a WINNER is
        SETTLED; the winner named by its name when the definition has one."""
        status = self.definition["status"]
        winners = [r for r in self.definition["runners"] if r["status"] == "WINNER"]
        if status == "CLOSED" and winners:
            return "SETTLED", ",".join(r.get("name") or str(r["id"]) for r in winners)
        return ("SUSPENDED" if status not in ("OPEN", "CLOSED") else status), None


# ---- a real-shaped image over 64 KiB ---------------------------------------------------------


@dataclass
class BigImage:
    path: Path
    image: bytes
    snapshots: dict[str, tuple[str, str | None]]  # market id -> (status, winner) expected
    markets: dict[str, int]  # the real markets: id -> lines about it in the file


def big_image_file(tmp_path: Path) -> BigImage:
    """One SUB_IMAGE line with every real market (its first change) and, as markets of
    their own (`<id>@<line>`), each real market's cache at every status change and every
    1000th line; then the rest of the real lines, in publish-time order."""
    entries, snapshots, markets, rests = [], {}, {}, []
    for name in MARKET_FILES:
        lines = [json.loads(line) for line in raw_lines(name)]
        market_id = lines[0]["mc"][0]["id"]
        entries.append(lines[0]["mc"][0] | {"img": True})
        markets[market_id] = len(lines)
        cache, shown = MarketCache(), None
        for n, line in enumerate(lines, 1):
            for change in line["mc"]:
                cache.apply(change)
            state = (cache.definition["status"], cache.definition["inPlay"])
            if state != shown or n % SNAPSHOT_EVERY == 0:
                snapshot_id = f"{market_id}@{n}"
                entries.append(cache.image(snapshot_id))
                snapshots[snapshot_id] = cache.shown()
                shown = state
        rests.append([(line["pt"], compact(line)) for line in lines[1:]])
    pt = min(json.loads(raw_lines(name)[0])["pt"] for name in MARKET_FILES)
    image = compact({"op": "mcm", "clk": "x", "pt": pt, "ct": "SUB_IMAGE", "mc": entries})
    path = tmp_path / "sub_image.jsonl"
    rest = [line for _, line in heapq.merge(*rests, key=lambda item: item[0])]
    path.write_bytes(b"\n".join([image, *rest]) + b"\n")
    return BigImage(path, image, snapshots, markets)


def status_history(rows: list[tuple]) -> list[tuple]:
    """(status, reason, ts) of every version that is not a price update, in order."""
    return [(status, reason, ts) for _, status, reason, ts in rows if reason != "prices"]


def test_an_image_of_many_markets_over_64_kib_replays_whole(tmp_path: Path) -> None:
    big = big_image_file(tmp_path)
    assert NATIVE_LIMIT < len(big.image) < BETFAIR_LIMIT
    db = replay([big.path], tmp_path / "image.duckdb")

    assert table(db, "SELECT count(*) FROM rejects") == [(0,)]
    every = {**big.snapshots, **dict.fromkeys(big.markets)}
    events = dict(table(db, "SELECT match_id, count(*) FROM feed_events GROUP BY ALL"))
    assert events == {market: big.markets.get(market, 1) for market in every}
    # each market cut from the image shows its cache's status and winner
    shown = table(db, "SELECT match_id, status, winner FROM market_status")
    assert {m: (s, w) for m, s, w in shown if m in big.snapshots} == big.snapshots
    assert {s for s, _ in big.snapshots.values()} == {"OPEN", "SUSPENDED", "SETTLED"}
    # each real market, from its part of the image on, as its own file gives it
    for name in MARKET_FILES:
        engine = LocalEngine()
        own = [
            r
            for raw in read_lines(shared_data("betfair", name))
            for r in engine.line(raw)
            if isinstance(r, MarketStatusRow)
        ]
        market_id = own[0].match_id
        got = table(
            db,
            "SELECT version, status, reason, ts FROM market_history "
            f"WHERE match_id = '{market_id}' ORDER BY version",
        )
        expected = status_history([(r.version, r.status, r.reason, r.ts) for r in own])
        assert status_history(got)[1:] == expected[1:], name
        assert status_history(got)[0][:2] == expected[0][:2], name  # stamped with the image's pt
        assert table(db, f"SELECT winner FROM market_status WHERE match_id = '{market_id}'") == [
            (own[-1].winner,)
        ]


# ---- over a format's limit: rejected, and the flow goes on ----------------------------------


def test_a_betfair_image_over_its_limit_is_rejected_and_its_deltas_say_unknown_market(
    tmp_path: Path,
) -> None:
    """The issue's story: a market's image is too long, so the market does not exist until
    its next definition; every delta in between says why it changed nothing."""
    lines = raw_lines(GREYHOUNDS)
    first = json.loads(lines[0])
    (change,) = first["mc"]
    copies = BETFAIR_LIMIT // len(compact(change["rc"])) + 1
    huge = compact(first | {"mc": [change | {"rc": change["rc"] * copies}]})
    assert len(huge) > read_limit("betfair")
    path = tmp_path / "greyhounds.jsonl"
    path.write_bytes(b"\n".join([huge, *lines[1:]]) + b"\n")

    refused = next(read_lines(path))  # cut where the limit is passed: no more is held
    assert len(refused.data) == read_limit("betfair")
    assert refused.rejected.startswith("betfair\tline_too_long\t")

    db = replay([path], tmp_path / "greyhounds.duckdb")
    market_id = change["id"]
    defined = next(  # the first line after the image that defines the market again
        n
        for n, line in enumerate(lines[1:], 2)
        if any("marketDefinition" in mc for mc in json.loads(line)["mc"])
    )
    rejects = table(db, "SELECT source, reason, provider, match_id, detail FROM rejects")
    too_long = "over 8388608 bytes, the betfair line limit (ODDSFLOW_MAX_BETFAIR_LINE_BYTES)"
    unknown = f"a change for market {market_id}, which no image or marketDefinition has defined"
    assert sorted(rejects, key=lambda r: int(r[0].split(":")[1])) == [
        ("greyhounds.jsonl:1", "line_too_long", "betfair", None, too_long),
        *[
            (f"greyhounds.jsonl:{n}", "unknown_market", "betfair", market_id, unknown)
            for n in range(2, defined)
        ],
    ]
    assert defined > 100  # most of the market's life was lost with its image, not silently
    cache = MarketCache()
    for line in lines[defined - 1 :]:
        for mc in json.loads(line)["mc"]:
            cache.apply(mc)
    assert table(db, "SELECT status, winner FROM market_status") == [cache.shown()]
    events = table(db, "SELECT count(*) FROM feed_events")
    assert events == [(len(lines) - defined + 1,)]


ROOT = Path(__file__).resolve().parents[1]


def test_a_native_line_over_64_kib_is_rejected_and_the_feed_goes_on(tmp_path: Path) -> None:
    sample = gzip.decompress((ROOT / "data" / "sample.jsonl.gz").read_bytes()).splitlines()
    line = json.loads(sample[-1]) | {"pad": "x" * NATIVE_LIMIT}  # a valid line, too long
    clean, padded = tmp_path / "clean" / "sample.jsonl", tmp_path / "padded" / "sample.jsonl"
    for path, lines in ((clean, sample), (padded, [sample[0], compact(line), *sample[1:]])):
        path.parent.mkdir()
        path.write_bytes(b"\n".join(lines) + b"\n")
    expected, got = replay([clean], tmp_path / "clean.duckdb"), replay([padded], tmp_path / "p.db")

    assert table(
        got, "SELECT source, reason, provider, detail FROM rejects WHERE raw LIKE '%xxxx%'"
    ) == [
        (
            "sample.jsonl:2",
            "line_too_long",
            None,
            "over 65536 bytes, the native line limit (ODDSFLOW_MAX_LINE_BYTES)",
        )
    ]
    for sql in (
        "SELECT * FROM matches",
        "SELECT * FROM market_status",
        "SELECT * FROM wallets",
        "SELECT provider, match_id, seq, ts, type FROM feed_events",
        "SELECT reason, count(*) FROM rejects GROUP BY ALL",
    ):
        rows = sorted(table(got, sql), key=repr)
        if "rejects" in sql:
            rows.remove(("line_too_long", 1))
        assert rows == sorted(table(expected, sql), key=repr), sql


def test_a_statsbomb_file_over_its_limit_is_rejected_and_the_other_files_go_on(
    tmp_path: Path,
) -> None:
    events = gzip.decompress(shared_data("statsbomb", "15986_events.json.gz").read_bytes())
    inner = events.strip()[1:-1]
    copies = Limits().max_statsbomb_bytes // len(inner) + 1
    too_big = tmp_path / "15986_events.json"  # the match's events many times over: 35 MB
    too_big.write_bytes(b"[" + b",".join([inner] * copies) + b"]")
    market = shared_data("betfair", GREYHOUNDS)
    db = replay([too_big, market], tmp_path / "sb.duckdb")

    assert table(db, "SELECT source, reason, provider, detail FROM rejects") == [
        (
            "15986_events.json",
            "line_too_long",
            "statsbomb",
            "over 33554432 bytes, the statsbomb file limit (ODDSFLOW_MAX_STATSBOMB_BYTES)",
        )
    ]
    assert table(db, "SELECT count(*) FROM matches") == [(0,)]
    assert table(db, "SELECT status FROM market_status") == [("SETTLED",)]


def test_limits_per_format_from_the_environment() -> None:
    limits = config.from_env(
        {
            "ODDSFLOW_MAX_LINE_BYTES": "1024",
            "ODDSFLOW_MAX_BETFAIR_LINE_BYTES": "2048",
            "ODDSFLOW_MAX_STATSBOMB_BYTES": "4096",
            "ODDSFLOW_MAX_DEPTH": "",  # empty: the default
        }
    ).limits
    assert [limits.max_bytes(f) for f in ("native", "betfair", "statsbomb")] == [1024, 2048, 4096]
    assert limits.max_depth == Limits().max_depth
    assert Limits().max_bytes("betfair") == BETFAIR_LIMIT
    line = b'{"op":"mcm","pt":1,"pad":"' + b"x" * 1500 + b'"}'
    assert limits.exceeded(line) == (
        "line_too_long",
        "over 1024 bytes, the native line limit (ODDSFLOW_MAX_LINE_BYTES)",
    )
    assert limits.exceeded(line, "betfair") is None
    bad = "ODDSFLOW_MAX_BETFAIR_LINE_BYTES: limits.max_betfair_line_bytes: expected int, got '8M'"
    with pytest.raises(config.ConfigError, match=re.escape(bad)):
        config.from_env({"ODDSFLOW_MAX_BETFAIR_LINE_BYTES": "8M"})
