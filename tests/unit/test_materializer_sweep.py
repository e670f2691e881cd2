"""The edge sweeps expired offers in small slices, so a lookup never waits behind a long walk."""

from __future__ import annotations

from pathlib import Path

from edge import materializer as materializer_module
from edge.materializer import Materializer, now_us
from edge.metrics import EdgeMetrics
from edge.render import Renderer
from edge.store import Change, OfferStore
from edge.waiters import Waiters
from runtime.kafka_security import KafkaAccess, Role

PLAINTEXT_EDGE = KafkaAccess(Role.EDGE, secured=False)  # no broker is reached here



def test_sweep_takes_one_slice_at_a_time_and_removes_only_the_expired(tmp_path: Path) -> None:
    store = OfferStore(tmp_path)
    metrics = EdgeMetrics("t")
    m = Materializer("unused:9092", "offers", store, Waiters(10), metrics,
                     access=PLAINTEXT_EDGE, keyring=None, renderer=Renderer(None))
    slice_size = materializer_module.SWEEP_SLICE
    expired_count = 2 * slice_size + slice_size // 2
    later = now_us() + 3_600_000_000
    changes = [Change(b"old-%05d" % i, b"offer", expires_at=1) for i in range(expired_count)]
    changes += [Change(b"z-new-%05d" % i, b"offer", expires_at=later) for i in range(10)]
    store.apply(changes, {0: len(changes)}, applied_at=1)

    def swept() -> float | None:
        return metrics.registry.get_sample_value("edge_offers_expired_total", {"region": "t"})

    m._sweep()
    assert swept() == slice_size            # one slice, not the whole store
    m._sweep()
    m._sweep()
    assert swept() == expired_count
    assert all(store.get(b"old-%05d" % i) is None for i in range(expired_count))
    assert all(store.get(b"z-new-%05d" % i) is not None for i in range(10))
    store.close()
