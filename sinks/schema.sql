-- oddsflow's DuckDB tables: the one definition that the DuckDB sink, the dashboard and the
-- tests use. Column order matches the row types in operators/rows.py. Primary keys are the
-- natural keys that make every write an idempotent upsert (a batch written twice after a
-- restart changes nothing).

CREATE TABLE IF NOT EXISTS feed_events (
    provider VARCHAR NOT NULL,
    match_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    type VARCHAR NOT NULL,
    payload VARCHAR NOT NULL,           -- the line as received (JSON)
    source VARCHAR NOT NULL,            -- file:line or topic/partition/offset
    PRIMARY KEY (provider, match_id, seq)
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
    period INTEGER NOT NULL,            -- 0 before kickoff, 1..4 in play
    minute INTEGER NOT NULL,
    home_score INTEGER NOT NULL,
    away_score INTEGER NOT NULL,
    home_red INTEGER NOT NULL,
    away_red INTEGER NOT NULL,
    status VARCHAR NOT NULL,            -- scheduled, live, break, ended
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
    ts BIGINT NOT NULL,
    PRIMARY KEY (match_id, market, version)
);

CREATE TABLE IF NOT EXISTS prices (
    match_id VARCHAR NOT NULL,
    market VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    selection VARCHAR NOT NULL,
    probability DOUBLE NOT NULL,        -- fair probability, before margin
    price DECIMAL(7, 2) NOT NULL,       -- decimal odds offered, on the Betfair ladder
    ts BIGINT NOT NULL,
    PRIMARY KEY (match_id, market, version, selection)
);
