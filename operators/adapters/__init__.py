"""Provider adapters: turn a provider's own recorded format into native feed v1 lines.

Each adapter is plain Python (no Bytewax import): a pure function from the provider's
objects to native line dicts (CONTRACT section 1), with malformed input returned as
reject dicts (`{"reject": True, "reason": ..., "raw": ..., "source": ...}`) instead of
raised errors.
"""
