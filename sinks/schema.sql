-- oddsflow's DuckDB tables: the one definition that the DuckDB sink, the dashboard and the
-- tests use. Column order matches the row types in operators/rows.py. Every write is
-- idempotent on the natural key (a batch written twice after a restart changes nothing):
-- primary keys where rows are upserted; for the large append-only history tables the key
-- is a group plus a number that only rises within it (`-- key:` below), and the sink
-- appends only rows above the highest number already stored for their group. That keeps
-- them unique without an index, which would cost more than the rest of the insert.

CREATE TABLE IF NOT EXISTS feed_events (
    provider VARCHAR NOT NULL,
    match_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    type VARCHAR NOT NULL,
    payload VARCHAR NOT NULL,           -- the line as received (JSON)
    source VARCHAR NOT NULL             -- file:line or topic/partition/offset
    -- key: (provider, match_id) seq
);

CREATE TABLE IF NOT EXISTS rejects (
    source VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,            -- short code: duplicate, invalid_field:seq, ...
    detail VARCHAR NOT NULL,            -- the field and the problem, in words
    raw VARCHAR NOT NULL,
    ts BIGINT,                          -- event time when the line had one
    provider VARCHAR,
    match_id VARCHAR,
    PRIMARY KEY (source, reason)
);

CREATE TABLE IF NOT EXISTS feed_gaps (
    provider VARCHAR NOT NULL,
    match_id VARCHAR NOT NULL,
    from_seq BIGINT NOT NULL,
    to_seq BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (provider, match_id, from_seq)
);

CREATE TABLE IF NOT EXISTS matches (
    match_id VARCHAR PRIMARY KEY,
    home VARCHAR NOT NULL,
    away VARCHAR NOT NULL,
    kickoff BIGINT NOT NULL,
    period INTEGER NOT NULL,            -- 0 before kickoff, 1..4 in play; tennis: the set
    minute INTEGER NOT NULL,
    home_score INTEGER NOT NULL,        -- goals; tennis: sets (the games: tennis_scores)
    away_score INTEGER NOT NULL,
    home_red INTEGER NOT NULL,
    away_red INTEGER NOT NULL,
    status VARCHAR NOT NULL,            -- scheduled, live, break, ended
    ts BIGINT NOT NULL
);

-- Tennis matches only: the whole score, latest per match (the `matches` row of a tennis
-- match counts sets in home_score/away_score and the set in play in `period`).
CREATE TABLE IF NOT EXISTS tennis_scores (
    match_id VARCHAR PRIMARY KEY,
    version INTEGER NOT NULL,           -- rises with every change of the score
    best_of INTEGER NOT NULL,           -- 3 or 5
    final_set_tiebreak BOOLEAN NOT NULL,
    server VARCHAR NOT NULL,            -- home or away: who serves the next point
    home_sets INTEGER NOT NULL,
    away_sets INTEGER NOT NULL,
    home_games INTEGER NOT NULL,        -- in the set in play
    away_games INTEGER NOT NULL,
    points VARCHAR NOT NULL,            -- the game in play, home first: 15-30, AD-40; tiebreak 5-4
    set_scores VARCHAR NOT NULL,        -- finished sets, home first: 6-4 3-6
    points_played INTEGER NOT NULL,
    result VARCHAR NOT NULL,            -- '', home, away (winner), retired:<side>, walkover:<side>
    ts BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS market_status (
    match_id VARCHAR NOT NULL,
    market VARCHAR NOT NULL,
    status VARCHAR NOT NULL,            -- OPEN, SUSPENDED, CLOSED, SETTLED
    version INTEGER NOT NULL,
    reason VARCHAR NOT NULL,
    ts BIGINT NOT NULL,
    winner VARCHAR,                     -- set once SETTLED
    PRIMARY KEY (match_id, market)
);

CREATE TABLE IF NOT EXISTS market_history (
    match_id VARCHAR NOT NULL,
    market VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    status VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    ts BIGINT NOT NULL
    -- key: (match_id, market) version
);

CREATE TABLE IF NOT EXISTS prices (
    match_id VARCHAR NOT NULL,
    market VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    selection VARCHAR NOT NULL,
    probability DOUBLE NOT NULL,        -- fair probability, before margin
    price DECIMAL(7, 2) NOT NULL,       -- decimal odds offered, on the Betfair ladder
    ts BIGINT NOT NULL
    -- key: (match_id, market) version, one row per selection
);

CREATE TABLE IF NOT EXISTS bets (
    bet_id VARCHAR PRIMARY KEY,
    user_id VARCHAR NOT NULL,
    match_id VARCHAR NOT NULL,
    market VARCHAR NOT NULL,
    selection VARCHAR NOT NULL,
    stake DECIMAL(12, 2) NOT NULL,
    price DECIMAL(7, 2) NOT NULL,       -- the bettor's price: what an accepted bet pays at
    status VARCHAR NOT NULL,            -- accepted, rejected, won, lost, void
    reason VARCHAR NOT NULL,            -- why rejected (market_suspended, price_changed, ...)
    payout DECIMAL(14, 2) NOT NULL,     -- paid on settlement (stake x price when won)
    ts BIGINT NOT NULL,                 -- when decided, then when settled
    version INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS wallets (
    user_id VARCHAR PRIMARY KEY,
    balance DECIMAL(14, 2) NOT NULL,
    version INTEGER NOT NULL,
    ts BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS wallet_ledger (
    user_id VARCHAR NOT NULL,
    version INTEGER NOT NULL,           -- the wallet's version after this movement
    ts BIGINT NOT NULL,
    kind VARCHAR NOT NULL,              -- deposit, stake, payout
    amount DECIMAL(14, 2) NOT NULL,     -- signed: stakes are negative
    balance DECIMAL(14, 2) NOT NULL,    -- after the movement, never negative
    ref VARCHAR NOT NULL                -- bet_id, or the deposit's source line
    -- key: (user_id) version
);

-- Live flows only: per worker and wall-clock minute, the lines whose processing by their
-- match ended in that minute, and the milliseconds from each line's arrival (the live
-- source took it from the Kafka consumer) to then (its rows handed on to the sinks).
-- Written once per minute and worker, when the minute is over or the flow ends.
CREATE TABLE IF NOT EXISTS latency (
    minute BIGINT NOT NULL,             -- epoch ms of the minute's start (UTC)
    worker INTEGER NOT NULL,
    lines BIGINT NOT NULL,
    p50_ms DOUBLE NOT NULL,
    p95_ms DOUBLE NOT NULL,
    p99_ms DOUBLE NOT NULL,
    max_ms DOUBLE NOT NULL,
    PRIMARY KEY (minute, worker)
);

-- Worst-case liability of every market from the accepted (and settled) bets: what the book
-- pays if selection s wins, minus the stakes it keeps from the other selections.
CREATE OR REPLACE VIEW exposure AS
WITH book AS (
    SELECT match_id, market, selection,
           sum(stake * (price - 1)) AS if_wins,
           sum(stake) AS stakes
    FROM bets WHERE status IN ('accepted', 'won', 'lost', 'void')
    GROUP BY ALL
), totals AS (
    SELECT match_id, market, sum(stakes) AS all_stakes FROM book GROUP BY ALL
)
SELECT b.match_id, b.market,
       max(b.if_wins - (t.all_stakes - b.stakes)) AS liability,
       -- ties: the last selection by name, so every run names the same one
       arg_max(b.selection, (b.if_wins - (t.all_stakes - b.stakes), b.selection))
           AS worst_selection,
       sum(b.stakes) AS stakes
FROM book b JOIN totals t USING (match_id, market)
GROUP BY ALL;
