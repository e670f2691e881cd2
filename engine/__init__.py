"""The offer engine: pure, deterministic functions from a login and per-user state to an offer.

No I/O and no clock inside: the caller passes the time in. The worker and the
origin's synchronous baseline call the same code, so both give the same offer
for the same input.
"""
