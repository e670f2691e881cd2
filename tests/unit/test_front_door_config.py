"""The front door's HAProxy configuration, rendered from the settings, and its place in the stack."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from devstack.front_door import (
    PASSIVE_CHECK,
    READY_PATH,
    FrontDoorError,
    check_config,
    failover_order,
    origin_address,
    origin_env,
    ready_url,
    render_config,
    write_config,
)
from devstack.stack import Stack, components
from runtime.settings import Settings, env_var


def _settings(tmp_path: Path, **changes: object) -> Settings:
    values: dict[str, object] = {"home": tmp_path, "origin_port": 8000,
                                 "edges": ("eu=8100", "us=8101", "ap=8102"),
                                 "front_door_listen": "127.0.0.1:8080", **changes}
    return Settings(**values)  # type: ignore[arg-type]


def _section(config: str, header: str) -> list[str]:
    """The lines of one section (``frontend public``, ``backend edge_eu``...), stripped."""
    lines = config.splitlines()
    start = lines.index(header) + 1
    end = next((i for i in range(start, len(lines)) if lines[i] and not lines[i][0].isspace()),
               len(lines))
    return [line.strip() for line in lines[start:end] if line.strip()]


def test_each_region_has_its_edge_first_and_the_next_regions_as_backups(tmp_path: Path) -> None:
    config = render_config(_settings(tmp_path))
    assert failover_order(["eu", "us", "ap"], "us") == ["us", "ap", "eu"]
    us = _section(config, "backend edge_us")
    servers = [line for line in us if line.startswith("server ")]
    assert [s.split()[1] for s in servers] == ["us", "ap", "eu"]
    assert servers[0].split()[2] == "127.0.0.1:8101" and " backup" not in servers[0]
    assert all(" backup " in s for s in servers[1:])
    assert "option httpchk GET /readyz" in us and "http-check expect status 200" in us
    assert all("check inter 1000ms fall 2 rise 2" in s and PASSIVE_CHECK in s for s in servers)


def test_offers_are_routed_by_the_region_cookie_and_the_rest_goes_to_the_origin(
        tmp_path: Path) -> None:
    public = _section(render_config(_settings(tmp_path)), "frontend public")
    routes = [line for line in public if line.startswith(("use_backend", "default_backend"))]
    assert routes == [
        "use_backend edge_eu if is_offer !is_sync { req.cook(positioning_region) -m str eu }",
        "use_backend edge_us if is_offer !is_sync { req.cook(positioning_region) -m str us }",
        "use_backend edge_ap if is_offer !is_sync { req.cook(positioning_region) -m str ap }",
        "use_backend edge_eu if is_offer !is_sync",   # no cookie, or an unknown region
        "default_backend origin",
    ]
    assert "acl is_offer path,url_dec -m beg /offers/" in public
    assert "acl is_sync path,url_dec /offers/sync" in public
    assert "bind 127.0.0.1:8080" in public
    assert f"monitor-uri {READY_PATH}" in public
    assert ("monitor fail if { nbsrv(origin) lt 1 } || { nbsrv(edge_eu) lt 1 } || "
            "{ nbsrv(edge_us) lt 1 } || { nbsrv(edge_ap) lt 1 }") in public


def test_client_forwarded_headers_are_dropped_before_the_front_door_adds_its_own(
        tmp_path: Path) -> None:
    public = _section(render_config(_settings(tmp_path)), "frontend public")
    forwardfor = public.index("option forwardfor")
    for header in ("X-Forwarded-For", "Forwarded", "X-Forwarded-Proto", "X-Real-IP"):
        assert public.index(f"http-request del-header {header}") < forwardfor
    assert "http-request set-header X-Forwarded-Proto http if !{ ssl_fc }" in public


def test_limits_and_timeouts_come_from_the_settings(tmp_path: Path) -> None:
    config = render_config(_settings(
        tmp_path, http_max_head_bytes=8192, http_max_headers=40, front_door_login_rate=7,
        front_door_login_rate_period_s=20, front_door_request_timeout_s=2.5,
        front_door_connect_timeout_s=1.5, front_door_check_interval_s=0.5,
        edge_max_wait_s=30, edge_sse_lifetime_s=45))
    assert "tune.bufsize 9216" in config and "tune.maxrewrite 1024" in config
    assert "tune.http.maxhdr 40" in config
    defaults = _section(config, "defaults")
    assert "timeout http-request 2500ms" in defaults and "option http-buffer-request" in defaults
    assert "timeout connect 1500ms" in defaults and "timeout queue 1500ms" in defaults
    # Idle timeouts outlast the longest silence an edge keeps: the event stream's 45 s.
    assert "timeout client 50000ms" in defaults and "timeout server 50000ms" in defaults
    assert "timeout http-keep-alive 5000ms" in defaults
    public = _section(config, "frontend public")
    assert "stick-table type ipv6 size 100k expire 20s store http_req_rate(20s)" in public
    assert "http-request track-sc0 src,ipmask(32,64) if is_login METH_POST" in public
    [limit] = [line for line in public if "status 429" in line]
    assert "hdr Retry-After 20" in limit and "{ sc_http_req_rate(0) gt 7 }" in limit
    assert "check inter 500ms" in config


def test_a_region_name_that_could_break_the_configuration_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FrontDoorError, match="edge region"):
        render_config(Settings(home=tmp_path, edges=("eu x=8100",)))
    with pytest.raises(FrontDoorError, match="lists no edge"):
        render_config(Settings(home=tmp_path, edges=()))


@pytest.mark.skipif(shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists(),
                    reason="haproxy is not installed")
def test_haproxy_accepts_the_rendered_configuration(tmp_path: Path) -> None:
    path = write_config(_settings(tmp_path, front_door_listen="[::1]:8080"))
    assert path == tmp_path / "front-door" / "haproxy.cfg"
    check_config(shutil.which("haproxy") or "/usr/sbin/haproxy", path)
    path.write_text(path.read_text().replace("mode http", "mode htp"))
    with pytest.raises(FrontDoorError, match="refused"):
        check_config(shutil.which("haproxy") or "/usr/sbin/haproxy", path)


def test_the_stack_starts_the_front_door_last_and_the_origin_trusts_it(tmp_path: Path) -> None:
    settings = _settings(tmp_path, trusted_proxies=("10.0.0.1",))
    stack = components(settings)
    door = stack[-1]
    assert door.name == "front-door" and door.args == ["front-door"] and door.port == 8080
    assert door.ready_url == f"https://127.0.0.1:8080{READY_PATH}" == ready_url(settings)
    assert door.ca_file is not None and door.ca_file.name == "ca.pem"  # the home's own CA
    [origin] = [c for c in stack if c.name == "origin"]
    # The front door connects from a pinned 127.0.0.2, not the 127.0.0.1 of every local
    # program: a program's X-Forwarded-For sent straight to the origin is not believed.
    assert origin.env == {"POSITIONING_TRUSTED_PROXIES": "10.0.0.1,127.0.0.2",
                          "POSITIONING_LOGIN_IP_FROM_BODY": "local"}
    assert origin_env(settings.replace(trusted_proxies=("127.0.0.2",))) == {
        "POSITIONING_TRUSTED_PROXIES": "127.0.0.2"}
    assert "source 127.0.0.2 check" in render_config(settings)
    assert Stack(settings).host_of(door) == "127.0.0.1"
    assert Stack(settings.replace(front_door_listen="0.0.0.0:9")).host_of(door) == "127.0.0.1"


def test_without_the_front_door_the_origin_trusts_only_its_settings(tmp_path: Path) -> None:
    stack = components(_settings(tmp_path, front_door=False))
    assert [c.name for c in stack if c.name == "front-door"] == []
    [origin] = [c for c in stack if c.name == "origin"]
    assert origin.env == {"POSITIONING_LOGIN_IP_FROM_BODY": "local"}


def test_up_without_haproxy_fails_before_starting_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from devstack import front_door
    from devstack.stack import StackError

    monkeypatch.setattr(front_door.shutil, "which", lambda name: None)
    monkeypatch.setattr(front_door, "SBIN_CANDIDATES", (str(tmp_path / "no-haproxy"),))
    with pytest.raises(StackError, match="apt-get install haproxy"):
        Stack(_settings(tmp_path), say=lambda _: None).up()
    assert not (tmp_path / "kafka").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("field", ["edge_host", "origin_host"])
def test_a_host_that_is_not_an_address_or_a_host_name_is_refused(tmp_path: Path,
                                                                  field: str) -> None:
    """Host settings go into the configuration: HAProxy syntax in one must not get there."""
    injected = "127.0.0.1:1 weight 0\n  http-request return status 200 if TRUE\n  server x 1.2.3.4"
    settings = Settings(home=tmp_path, **{field: injected})
    with pytest.raises(FrontDoorError, match="IP address or a host name"):
        render_config(settings)


def test_the_origin_is_trusted_and_reached_at_the_address_its_host_name_resolves_to(
        tmp_path: Path) -> None:
    """The origin compares peer addresses, never names: `localhost` becomes an address."""
    settings = Settings(home=tmp_path, origin_host="localhost")
    address = origin_address(settings)
    assert address in ("127.0.0.1", "::1")
    source = origin_env(settings)[env_var("trusted_proxies")].split(",")[-1]
    assert source == ("127.0.0.2" if address == "127.0.0.1" else "::1")
    assert any(line.strip().startswith(f"server origin {address}") and f"source {source}" in line
               for line in render_config(settings).splitlines())


def test_the_pinned_source_is_what_a_connection_really_leaves_from(tmp_path: Path) -> None:
    """An origin on 127.0.0.2: a connection to it would leave from 127.0.0.1 unless pinned;
    the pinned address is another, and one that can really be connected from."""
    import socket

    from devstack.front_door import source_address

    settings = Settings(home=tmp_path, origin_host="127.0.0.2")
    source = source_address(settings)
    assert source == "127.0.0.3"
    with socket.socket() as listener, socket.socket() as client:
        listener.bind(("127.0.0.2", 0))
        listener.listen()
        client.bind((source, 0))
        client.connect(listener.getsockname())
        peer, _ = listener.accept()
        assert peer.getpeername()[0] == source
        peer.close()
    assert source_address(settings.replace(front_door_source="10.1.2.3")) == "10.1.2.3"
    with pytest.raises(FrontDoorError, match="not an IP address"):
        source_address(settings.replace(front_door_source="gateway"))


def test_the_exporter_answers_on_the_operators_listener_only(tmp_path: Path) -> None:
    config = render_config(_settings(tmp_path, front_door_metrics_listen="127.0.0.1:9404"))
    public, metrics = config.split("frontend metrics")
    assert "bind 127.0.0.1:9404" in metrics
    assert "use-service prometheus-exporter if { path /metrics }" in metrics
    assert "prometheus-exporter" not in public
    assert "http-request return status 404" in public.split("frontend public")[1]  # /metrics
