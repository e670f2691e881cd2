"""The front door (HAProxy) of `positioning up`: routing, failover, limits, forwarded headers.

One stack for the module, with a fast health check (every 0.5 s, fall 2,
rise 2), a 1.5 s request timeout and a login limit of 10 per 10 s. No test
depends on another's order: the edge-kill test brings its edge back with `up`
and waits until the front door routes to it again, and the rate-limit test
logs in from a loopback address of its own.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from devstack.front_door import READY_PATH, client_ca, public_url
from devstack.ports import free_edge_port, free_port, port_in_use
from tests.conftest import unique_settings
from tests.e2e.local_stack import LocalStack
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

CHECK_INTERVAL_S = 0.5
CHECK_FALL = 2
REQUEST_TIMEOUT_S = 1.5
LOGIN_RATE = 10
# Beyond interval × fall: one check's own duration, HAProxy's retry turn-around
# (min(connect timeout, 1 s)) and a loaded 2-core machine.
WINDOW_MARGIN_S = 1.5
JAPAN = "133.11.0.1"   # APAC: no `ap` edge here, so the first edge, eu
USA = "8.8.8.8"        # NA: us


class FrontDoorStack(LocalStack):
    @property
    def door(self) -> str:
        """The front door's HTTPS address."""
        return public_url(self.settings)

    @property
    def verify(self) -> ssl.SSLContext:
        """Trusts the home's own CA, and nothing else: certificate checks stay on."""
        ca = client_ca(self.settings)
        assert ca is not None
        return ssl.create_default_context(cafile=str(ca))


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[FrontDoorStack]:
    home = tmp_path_factory.mktemp("front-door")
    settings = unique_settings(
        kafka_bootstrap, home, origin_port=free_port(),
        edges=(f"eu={free_edge_port()}", f"us={free_edge_port()}"),
        front_door_check_interval_s=CHECK_INTERVAL_S, front_door_check_fall=CHECK_FALL,
        front_door_check_rise=2, front_door_request_timeout_s=REQUEST_TIMEOUT_S,
        front_door_login_rate=LOGIN_RATE, front_door_login_rate_period_s=10)
    local = FrontDoorStack(settings)
    up = local.cli("up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "front-door started" in up.stdout
    try:
        # The door is ready once every region is served, by a backup if need be; its own
        # edge may still be rising through its health checks. Wait until each is routed home.
        for region in settings.edge_ports:
            wait_until(lambda region=region: _routed_to(local, region) == region, 15,
                       f"the front door to route region {region} to its own edge")
        yield local
    finally:
        down = local.cli("down")
        config = str(settings.home / "front-door" / "haproxy.cfg")
        left = [p.pid for p in psutil.process_iter(["cmdline"])
                if config in (p.info["cmdline"] or [])]
        assert down.returncode == 0 and "front-door stopped" in down.stdout, down.stdout
        assert left == [], f"haproxy left running: {left}"
        assert not port_in_use("127.0.0.1", settings.front_door_host_port[1])


def _routed_to(stack: FrontDoorStack, region: str) -> str | None:
    """The region of the edge that answers a lookup of ``region``'s cookie through the door."""
    response = httpx.get(f"{stack.door}/offers/not-a-ticket",
                         cookies={"positioning_region": region}, timeout=5, verify=stack.verify)
    return response.headers.get("x-edge-region")


def _login(client: httpx.Client, user: str, ip: str | None = None,
           headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"user_id": user} if ip is None else {"user_id": user, "ip": ip}
    return client.post("/login", json=body, headers=headers or {})


def test_a_login_and_its_offer_through_the_front_door(stack: FrontDoorStack) -> None:
    with httpx.Client(base_url=stack.door, verify=stack.verify, timeout=30) as client:
        assert client.get(READY_PATH).status_code == 200
        login = _login(client, "door-kenji", JAPAN)
        assert login.status_code == 202, login.text
        assert login.json()["region"] == "eu"
        assert login.headers["set-cookie"] == (
            "positioning_region=eu; Path=/offers; SameSite=Lax; HttpOnly")
        # The client's cookie jar sends the region back on /offers/…, as a browser does.
        offer = client.get(f"/offers/{login.json()['ticket']}", params={"wait": 20})
        assert offer.status_code == 200, offer.text
        assert offer.json()["currency"] == "JPY"
        assert offer.headers["x-edge-region"] == "eu"
        assert offer.headers["via"] == "1.1 positioning-front-door"

        american = _login(client, "door-emma", USA).json()
        assert american["region"] == "us"
        offer = client.get(f"/offers/{american['ticket']}", params={"wait": 20})
        assert offer.status_code == 200 and offer.headers["x-edge-region"] == "us"

        # The origin's pages, and no metrics for the public.
        assert "<html" in client.get("/").text.lower()
        assert "edges" in client.get("/config.json").json()
        assert client.get("/metrics").status_code == 404
        assert client.get("/%6Detrics").status_code == 404      # decoded, it is /metrics
    # Without a cookie, the first region's edge answers.
    plain = httpx.get(f"{stack.door}/offers/{american['ticket']}", timeout=10,
                      verify=stack.verify)
    assert plain.status_code == 200 and plain.headers["x-edge-region"] == "eu"


def test_a_client_sent_forwarded_header_is_not_the_client_address(stack: FrontDoorStack) -> None:
    spoof = {"X-Forwarded-For": JAPAN, "Forwarded": f"for={JAPAN}", "X-Real-IP": JAPAN}
    with httpx.Client(base_url=stack.door, verify=stack.verify, timeout=30) as client:
        login = _login(client, "door-spoofer", headers=spoof)   # no ip: the client address
        assert login.status_code == 202, login.text
        # 127.0.0.1 has no country: the default market, served by `us`; Japan's would be `eu`.
        assert login.json()["region"] == "us"
        offer = client.get(f"/offers/{login.json()['ticket']}", params={"wait": 20})
    assert offer.status_code == 200
    assert offer.json()["country"] == "ZZ" and offer.json()["currency"] == "USD"


def test_logins_over_the_rate_limit_get_429(stack: FrontDoorStack) -> None:
    # A loopback address of its own, so the other tests' logins do not count.
    transport = httpx.HTTPTransport(local_address="127.0.0.3", verify=stack.verify)
    with httpx.Client(base_url=stack.door, transport=transport, timeout=10) as client:
        # Empty bodies: the origin refuses them (422), and each one counts all the same.
        statuses = [client.post("/login", json={}).status_code for _ in range(LOGIN_RATE)]
        assert statuses == [422] * LOGIN_RATE
        over = client.post("/login", json={"user_id": "door-flood"})
        assert over.status_code == 429, over.text
        assert over.headers["retry-after"] == "10"
        assert "too many logins" in over.json()["error"]
        # The same path percent-encoded (uvicorn decodes it to /login) is limited as well.
        assert client.post("/%6Cogin", json={"user_id": "door-flood"}).status_code == 429
        assert client.get(f"/offers/{'x' * 20}").status_code != 429   # lookups are not limited
    # Another address: let in.
    with httpx.Client(base_url=stack.door, verify=stack.verify, timeout=10) as other:
        assert _login(other, "door-other").status_code == 202


def test_a_slow_header_client_is_cut_off(stack: FrontDoorStack) -> None:
    host, port = stack.settings.front_door_host_port
    head = b"GET /offers/slow HTTP/1.1\r\nHost: front-door\r\nX-Slowloris: " + b"a" * 200
    answer = b""
    with socket.create_connection((host, port), timeout=5) as raw, \
            stack.verify.wrap_socket(raw, server_hostname=host) as sock:
        started = time.monotonic()
        sock.settimeout(0.25)      # one byte every quarter second: far slower than allowed
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                break
            try:
                answer = sock.recv(4096)
                break              # an answer, or b"" (closed)
            except TimeoutError:
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionResetError):
                break
        else:
            pytest.fail("the whole slow head was sent without the front door cutting it off")
        cut_after = time.monotonic() - started
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert REQUEST_TIMEOUT_S - 0.3 <= cut_after <= REQUEST_TIMEOUT_S + 2.0, cut_after


@pytest.mark.browser
def trusting_home(stack: FrontDoorStack, tmp_path: Path) -> str:
    """A HOME whose NSS database (Chromium's certificate store on Linux) trusts the home's
    CA, as a user would add it (`certutil`, libnss3-tools): the browser checks the front
    door's certificate, no check is switched off."""
    ca = client_ca(stack.settings)
    assert ca is not None
    db = tmp_path / "browser-home" / ".pki" / "nssdb"
    db.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True)
    subprocess.run(["certutil", "-A", "-d", f"sql:{db}", "-t", "C,,", "-n",
                    "content-positioning local CA", "-i", str(ca)], check=True)
    return str(tmp_path / "browser-home")


def test_web_client_through_the_front_door(stack: FrontDoorStack, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    home = trusting_home(stack, tmp_path)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, env={**os.environ, "HOME": home},
                                    args=["--no-sandbox", "--disable-gpu",
                                          "--disable-background-networking",
                                          "--disable-component-update", "--disable-sync",
                                          "--no-first-run"])
        try:
            page = browser.new_page()
            page.goto(stack.door + "/")
            page.wait_for_selector("#region[data-front-door=true]")
            page.select_option("#user-select", "kenji|133.11.0.1")
            page.fill("#gap", "200")
            page.click("#login")
            page.wait_for_selector("[data-way=pushed] .waited", timeout=30_000)
            offer_text = page.inner_text("#offer")
            errors = page.locator(".error").all_inner_texts()
        finally:
            browser.close()
    assert errors == []
    assert "kenji" in offer_text and "JPY" in offer_text


def test_a_killed_edge_is_replaced_within_the_health_check(stack: FrontDoorStack) -> None:
    """SIGKILL the `eu` edge while its users look offers up through the front door.

    The window of failed lookups (first to last failure) must stay within
    interval × fall of the health check, plus a margin; the figure is printed
    (run with -s) for the README.
    """
    with httpx.Client(base_url=stack.door, verify=stack.verify, timeout=30) as client:
        login = _login(client, "door-failover", JAPAN).json()
        assert login["region"] == "eu"
        path = f"/offers/{login['ticket']}"
        assert client.get(path, params={"wait": 20}).headers["x-edge-region"] == "eu"

        edge_pid = stack.pids()["edge-eu"]
        failures: list[float] = []
        served_by: list[str] = []
        slowest = 0.0
        killed_at = 0.0
        lookups = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            lookups += 1
            if not killed_at and lookups > 20:   # the lookups are flowing: kill the edge
                os.killpg(edge_pid, signal.SIGKILL)
                killed_at = time.monotonic()
            sent = time.monotonic()
            try:
                response = client.get(path)
                ok = response.status_code == 200
                region = response.headers.get("x-edge-region", "")
            except httpx.TransportError:
                ok, region = False, ""
            slowest = max(slowest, time.monotonic() - sent) if killed_at else slowest
            if not ok:
                failures.append(time.monotonic())
            elif killed_at:
                served_by.append(region)
            if killed_at and time.monotonic() - killed_at > 3 * CHECK_INTERVAL_S * CHECK_FALL \
                    and served_by[-10:] == ["us"] * 10:
                break
        assert killed_at, "the edge was never killed"
        assert served_by[-10:] == ["us"] * 10, served_by[-20:]
        window = failures[-1] - failures[0] if failures else 0.0
        bound = CHECK_INTERVAL_S * CHECK_FALL + WINDOW_MARGIN_S
        print(f"\nfront door failover: {len(failures)} failed lookups, window {window:.2f} s "
              f"(bound {bound:.2f} s), slowest lookup {slowest:.2f} s", file=sys.stderr)
        assert window <= bound, (window, failures)

        # An eu user logging in now still gets the offer, from the next region's edge.
        late = _login(client, "door-late", JAPAN).json()
        offer = client.get(f"/offers/{late['ticket']}", params={"wait": 20})
        assert offer.status_code == 200 and offer.headers["x-edge-region"] == "us"

    # `up` brings the edge back; once ready, the front door sends eu users to it again.
    revived = stack.cli("up")
    assert revived.returncode == 0, revived.stdout + revived.stderr
    wait_until(lambda: httpx.get(f"{stack.door}{path}", cookies={"positioning_region": "eu"},
                                 timeout=5, verify=stack.verify
                                 ).headers.get("x-edge-region") == "eu",
               10, "the front door to send eu users to the restarted eu edge")


def test_https_only_with_hsts_tls_1_2_at_least_and_h2(stack: FrontDoorStack) -> None:
    http_host, http_port = stack.settings.front_door_http_host_port
    plain = httpx.get(f"http://{http_host}:{http_port}/offers/x?wait=1", timeout=5)
    assert plain.status_code == 308
    assert plain.headers["location"] == f"{stack.door}/offers/x?wait=1"
    assert "strict-transport-security" not in plain.headers  # HSTS is for HTTPS answers
    with httpx.Client(base_url=stack.door, verify=stack.verify, timeout=10) as client:
        for response in (client.get("/healthz"), client.get("/metrics"),   # origin's, HAProxy's
                         client.get("/offers/not-a-ticket")):             # an edge's
            assert response.headers["strict-transport-security"] == "max-age=31536000"
    host, port = stack.settings.front_door_host_port
    context = stack.verify
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection((host, port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        assert tls.selected_alpn_protocol() == "h2"
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    old = stack.verify
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with socket.create_connection((host, port), timeout=5) as raw, pytest.raises(ssl.SSLError):
        old.wrap_socket(raw, server_hostname=host)
    # A client that does not trust the home's CA is refused the handshake.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{stack.door}/healthz", timeout=5)


def test_the_front_door_log_is_written(stack: FrontDoorStack) -> None:
    log = Path(stack.settings.logs_dir / "front-door.log").read_text()
    assert "GET /offers/" in log and "public~ edge_eu/eu" in log  # ~: over TLS
