"""Load-test your own deployment with Locust: log in at the origin, then fetch the offer at an edge.

    pip install -e . locust     # in a checkout: the locustfile reads runtime.settings
    locust -f loadtest/locustfile.py --host http://ORIGIN:8000 \\
        --headless -u 200 -r 20 -t 2m

Configured like everything else, by ``Settings()`` (docs/configuration.md):
``POSITIONING_LOADTEST_EDGE_URL`` is the edge users are near (``loadtest_edge_url``),
``POSITIONING_LOADTEST_GAP_S`` the seconds a user spends between login and wanting
the offer (``loadtest_gap_s``).

Each simulated user logs in (``POST /login``), waits the gap, then reads its
offer at the edge with ``?wait=10`` (the positioned way). Locust reports the
two requests separately; the edge request's time is what the user waits
after navigating. Locust is not a dependency of the project: install it
where you run the load.
"""

from __future__ import annotations

import random
import uuid

import gevent
from locust import HttpUser, between, task

from runtime.settings import Settings

SETTINGS = Settings()
EDGE_URL = SETTINGS.loadtest_edge_url.rstrip("/")
GAP_S = SETTINGS.loadtest_gap_s
# Addresses in a few countries, so offers come in several currencies.
IPS = ("81.2.69.160", "133.11.0.1", "8.8.8.8", "85.214.132.117", "200.147.67.142", "1.1.1.1")


class PositionedUser(HttpUser):
    wait_time = between(1, 3)

    @task
    def login_then_fetch_offer(self) -> None:
        user_id = f"locust-{random.randrange(1_000_000)}"
        body = {"user_id": user_id, "ip": random.choice(IPS)}
        key = str(uuid.uuid4())  # a 503 is retried with the same key: one visit
        for _attempt in range(3):
            with self.client.post("/login", json=body, headers={"Idempotency-Key": key},
                                  name="POST /login", catch_response=True) as login:
                if login.status_code == 202:
                    ticket = login.json()["ticket"]
                    break
                login.failure(f"login answered {login.status_code}")
                if login.status_code != 503:
                    return
            gevent.sleep(1)
        else:
            return
        gevent.sleep(GAP_S)  # the user reads the next page; cooperative under Locust
        with self.client.get(f"{EDGE_URL}/offers/{ticket}", params={"wait": 10},
                             name="GET edge /offers/{ticket}", catch_response=True) as offer:
            if offer.status_code != 200:
                offer.failure(f"edge answered {offer.status_code}: {offer.text[:100]}")
