"""Provider adapters: read a provider's own recorded format, in plain Python (no Bytewax).

StatsBomb and point-by-point tennis become native feed lines (docs/feed-format.md); a
Betfair stream is mirrored straight into rows (betfair.py). Malformed input comes back as a
reject (a `Reject` row, or a `{"reject": True, "reason": ..., ...}` dict), never raised.
"""
