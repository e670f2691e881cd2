"""The offer engine: deterministic functions from a login and per-user state to an offer.

No clock inside: the caller passes the time in. The engine reads only its own
shipped data (the catalog, the offline IP database); the one thing that waits
is ``offers.simulate_model_latency``, an ``asyncio.sleep`` standing in for a
model call when ``POSITIONING_MODEL_LATENCY_MS`` is set. The worker and the
origin's synchronous baseline call the same code, so both give the same offer
for the same input. It imports no other package of this project.
"""
