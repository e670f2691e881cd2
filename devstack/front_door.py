"""The front door: HAProxy before the local origin and edges, standing in for a CDN / GeoDNS.

``render_config`` writes ``haproxy.cfg`` from the settings into
``<home>/front-door/``; ``run`` checks it (``haproxy -c``) and runs HAProxy
in the foreground as a child of ``positioning front-door``, forwarding
SIGTERM and SIGINT, so ``positioning up`` supervises it like any other
component (its pid file names our command line). Why HAProxy:
docs/decisions/0011-front-door-haproxy.md.

What the configuration does:

- ``/offers/…`` (but ``/offers/sync``) goes to the edge of the region in the
  ``REGION_COOKIE`` cookie (origin/regions.py), the first configured region
  when it is absent or unknown. Each edge backend health-checks
  ``GET /readyz`` every ``front_door_check_interval_s`` (fall/rise from the
  settings) and holds the other regions' edges as ``backup`` servers, the
  next region first: an edge that is down or not ready is replaced by the
  next ready one, as every edge holds every offer. An edge that refuses a
  connection is taken out at once (``PASSIVE_CHECK``) and the request retried
  on the next, so a killed edge costs its users a retry (HAProxy's turn-around
  of min(connect timeout, 1 s)), not an error.
- Everything else goes to the origin, which is health-checked the same way;
  ``/metrics`` is not served to the public (404).
- Limits: request head size and field count (``http_max_head_bytes``,
  ``http_max_headers``), a time for the whole request
  (``front_door_request_timeout_s``, 408), idle, connect and queue
  timeouts, and a per-address rate limit on ``POST /login`` (429 with
  ``Retry-After``).
- Forwarded headers: any ``X-Forwarded-For``, ``Forwarded``,
  ``X-Forwarded-Proto``/``-Host`` or ``X-Real-IP`` the client sent is
  deleted, then the front door adds its own ``X-Forwarded-For`` (the peer
  address) and ``X-Forwarded-Proto``. The origin believes them because
  ``up`` adds the address the front door connects from to its
  ``trusted_proxies`` (``origin_env``).
- ``GET READY_PATH`` answers 200 while the origin and every region's edge
  backend have a usable server, else 503 (the component's ready URL).
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from devstack.broker.security import ensure_local_ca, issue_certificate
from origin.regions import REGION_COOKIE
from runtime.private_files import write_private
from runtime.settings import Settings, env_var

HSTS_MAX_AGE_S = 31_536_000  # a year, as the HSTS preload list asks (RFC 6797)
# Where HAProxy answers its own readiness (HAProxy's `monitor-uri`).
READY_PATH = "/front-door/ready"
# Debian's package; `.ci/run` and `./run demo` install it when missing.
INSTALL_HINT = "sudo apt-get install haproxy"
# Where Debian and a source build put haproxy, which a user's PATH often lacks.
SBIN_CANDIDATES = ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy")
# Bytes of the buffer HAProxy keeps free for rewriting headers (`tune.maxrewrite`);
# a request head may use the rest of `tune.bufsize`.
MAX_REWRITE_BYTES = 1024
# Seconds an idle keep-alive connection stays open, as uvicorn's on origin and edges.
KEEP_ALIVE_S = 5.0
# Seconds of silence allowed on a connection beyond the longest legitimate one
# (an `?wait` or an event stream held open by the edge).
IDLE_MARGIN_S = 5.0

# An edge that refuses a connection is taken out at once (it has backups), and the
# request is retried on the next usable server; the active checks put it back.
PASSIVE_CHECK = "observe layer4 error-limit 1 on-error mark-down"

_REGION_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_WILDCARDS = {"0.0.0.0", "::", ""}
# A host name as RFC 1123 allows it: what may go into the configuration besides an IP literal.
_HOST_NAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")


class FrontDoorError(RuntimeError):
    """The front door cannot run: HAProxy is missing, or the configuration is refused."""


def config_dir(settings: Settings) -> Path:
    """``<home>/front-door/``, where the rendered configuration lives."""
    return settings.home / "front-door"


def config_path(settings: Settings) -> Path:
    return config_dir(settings) / "haproxy.cfg"


def public_url(settings: Settings) -> str:
    """Where clients reach the front door: ``https://host:port`` (``http`` if TLS is off)."""
    host, port = settings.front_door_host_port
    return f"{settings.front_door_scheme}://{_url_host(connectable(host))}:{port}"


def ready_url(settings: Settings) -> str:
    """The front door's readiness page (200 once origin and edges are reachable through it)."""
    return public_url(settings) + READY_PATH


def client_ca(settings: Settings) -> Path | None:
    """The CA file a client of this home's front door checks its certificate with: the
    home's own CA, or None when ``front_door_cert_file`` is the deployment's own (signed by a
    CA the system trusts) or TLS is off."""
    if not settings.front_door_tls or settings.front_door_cert_file is not None:
        return None
    return ensure_local_ca(settings)


def tls_pem(settings: Settings) -> Path:
    """The PEM HAProxy serves (certificate chain and key): ``front_door_cert_file``, else a
    certificate for the listen host, 127.0.0.1 and localhost from the home's CA, made once.

    Raises:
        FrontDoorError: the configured file does not exist.
    """
    if settings.front_door_cert_file is not None:
        if not settings.front_door_cert_file.is_file():
            raise FrontDoorError(f"{env_var('front_door_cert_file')}="
                                 f"{settings.front_door_cert_file} does not exist")
        return settings.front_door_cert_file
    path = config_dir(settings) / "tls.pem"
    if not path.exists():
        ensure_local_ca(settings)
        host = connectable(settings.front_door_host_port[0])
        directory = config_dir(settings) / "tls"
        key, cert = issue_certificate(settings, "front-door", directory,
                                      hosts=(host, "127.0.0.1", "localhost"))
        write_private(path, cert.read_bytes() + key.read_bytes())
        key.unlink()
    return path


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def origin_address(settings: Settings) -> str:
    """The IP address the front door connects to the origin at.

    A host name is resolved here, once, and the configuration uses the
    address. Where it connects from is ``source_address``.

    Raises:
        FrontDoorError: the host is not an address or a valid host name, or does not resolve.
    """
    host = _checked_host(connectable(settings.origin_host), "origin_host")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return str(socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0])
    except OSError as exc:
        raise FrontDoorError(f"{env_var('origin_host')}={host!r} does not resolve: {exc}") \
            from None


def _checked_host(host: str, setting: str) -> str:
    """``host`` if it is an IP literal or an RFC 1123 host name: it goes into the configuration.

    Raises:
        FrontDoorError: anything else (spaces, newlines, ports, HAProxy syntax).
    """
    try:
        ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
        return host
    except ValueError:
        pass
    if not _HOST_NAME.fullmatch(host):
        raise FrontDoorError(f"{env_var(setting)}={host!r}: the front door needs an IP address "
                             "or a host name (letters, digits, '-' and '.')")
    return host


def source_address(settings: Settings) -> str:
    """The address the front door connects to the origin from: pinned in its configuration
    (HAProxy's ``source``), so it is the one address the origin trusts, by construction.

    ``front_door_source`` if set; for an origin on IPv4 loopback, a loopback
    address that is neither the origin's nor 127.0.0.1, the one every local
    program connects from by default (so their ``X-Forwarded-For`` sent
    straight to the origin is not believed); otherwise the address this
    machine's routes pick to reach the origin.

    Raises:
        FrontDoorError: the setting is not an IP address, or the origin is unreachable.
    """
    if settings.front_door_source:
        try:
            return str(ipaddress.ip_address(settings.front_door_source))
        except ValueError:
            raise FrontDoorError(f"{env_var('front_door_source')}="
                                 f"{settings.front_door_source!r} is not an IP address") from None
    origin = ipaddress.ip_address(origin_address(settings))
    if origin.is_loopback and origin.version == 4:
        return next(a for a in ("127.0.0.2", "127.0.0.3") if a != str(origin))
    if origin.is_loopback:
        return str(origin)  # IPv6 has one loopback address
    family = socket.AF_INET6 if origin.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:  # sends nothing
            probe.connect((str(origin), settings.origin_port))
            return str(probe.getsockname()[0])
    except OSError as exc:
        raise FrontDoorError(f"no route to the origin at {origin}: {exc}") from None


def origin_env(settings: Settings) -> dict[str, str]:
    """The origin's environment when the front door is on: the front door's pinned source
    address (``source_address``) is a trusted proxy."""
    trusted = settings.trusted_proxies
    address = source_address(settings)
    if address not in trusted:
        trusted = (*trusted, address)
    return {env_var("trusted_proxies"): ",".join(trusted)}


def connectable(host: str) -> str:
    """Where to reach a listen address: itself; a wildcard (``0.0.0.0``, ``::``) at loopback."""
    if host in _WILDCARDS:
        return "127.0.0.1" if host != "::" else "::1"
    return host


def _hostport(host: str, port: int) -> str:
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:  # a host name
        is_v6 = False
    return f"[{host}]:{port}" if is_v6 else f"{host}:{port}"


def _ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def _regions(settings: Settings) -> list[str]:
    """The configured edge regions, in order; names go into the configuration, so checked.

    Raises:
        FrontDoorError: no edge, or a region name HAProxy's configuration cannot carry safely.
    """
    regions = list(settings.edge_ports)
    if not regions:
        raise FrontDoorError(f"{env_var('edges')} lists no edge: nothing to route offers to")
    for region in regions:
        if not _REGION_NAME.fullmatch(region):
            raise FrontDoorError(
                f"edge region {region!r} in {env_var('edges')}: the front door needs 1 to 32 "
                "lower-case letters, digits and '-', starting with a letter or digit")
    return regions


def failover_order(regions: Sequence[str], region: str) -> list[str]:
    """``region`` first, then the regions after it, wrapping around: its backups, in order."""
    i = list(regions).index(region)
    return [*regions[i:], *regions[:i]]


def render_config(settings: Settings) -> str:
    """haproxy.cfg for these settings (see the module docstring for what it does).

    Raises:
        FrontDoorError: see ``_regions``.
    """
    regions = _regions(settings)
    host, port = settings.front_door_host_port
    host = _checked_host(host, "front_door_listen") if host not in _WILDCARDS else host
    check = (f"inter {_ms(settings.front_door_check_interval_s)} "
             f"fall {settings.front_door_check_fall} rise {settings.front_door_check_rise}")
    idle_s = max(settings.edge_max_wait_s, settings.edge_sse_lifetime_s) + IDLE_MARGIN_S
    rate, period = settings.front_door_login_rate, settings.front_door_login_rate_period_s
    lines = [
        "# Rendered by devstack/front_door.py from the settings at every start; do not edit.",
        "global",
        "    log stdout format raw local0 info",
        f"    maxconn {settings.front_door_max_connections}",
        f"    tune.bufsize {settings.http_max_head_bytes + MAX_REWRITE_BYTES}",
        f"    tune.maxrewrite {MAX_REWRITE_BYTES}",
        f"    tune.http.maxhdr {settings.http_max_headers}",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option httplog",
        "    option dontlognull",
        # Wait for the body too, so `timeout http-request` bounds a slow body as well.
        "    option http-buffer-request",
        f"    timeout http-request {_ms(settings.front_door_request_timeout_s)}",
        f"    timeout http-keep-alive {_ms(KEEP_ALIVE_S)}",
        f"    timeout client {_ms(idle_s)}",
        f"    timeout server {_ms(idle_s)}",
        f"    timeout connect {_ms(settings.front_door_connect_timeout_s)}",
        f"    timeout queue {_ms(settings.front_door_connect_timeout_s)}",
        f"    timeout check {_ms(settings.front_door_check_interval_s)}",
        # A refused connection is retried at once on another usable server.
        "    retries 2",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response",
        "",
        "frontend public",
        *_binds(settings, host, port),
        f"    maxconn {settings.front_door_max_connections}",
        f"    monitor-uri {READY_PATH}",
        "    monitor fail if { nbsrv(origin) lt 1 }" + "".join(
            f" || {{ nbsrv(edge_{r}) lt 1 }}" for r in regions),
        # Plain HTTP is only ever redirected, to the same host on the HTTPS port.
        *([f"    http-request redirect location https://%[req.hdr(host),"
           f"regsub(:[0-9]+$,)]:{port}%[capture.req.uri] code 308 if !{{ ssl_fc }}",
           # HSTS on every HTTPS answer, HAProxy's own (429, 404, 408...) included.
           f"    http-after-response set-header Strict-Transport-Security "
           f"\"max-age={HSTS_MAX_AGE_S}\" if {{ ssl_fc }}"]
          if settings.front_door_tls else []),
        # Forwarded headers: only the front door's own reach the servers.
        "    http-request del-header X-Forwarded-For",
        "    http-request del-header Forwarded",
        "    http-request del-header X-Forwarded-Proto",
        "    http-request del-header X-Forwarded-Host",
        "    http-request del-header X-Real-IP",
        "    option forwardfor",
        "    http-request set-header X-Forwarded-Proto https if { ssl_fc }",
        "    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }",
        "    http-response set-header Via \"1.1 positioning-front-door\"",
        # The login rate per client: an IPv4 address or an IPv6 /64 (one subscriber's
        # prefix, which it can rotate addresses in), in a stick table of request rates.
        f"    stick-table type ipv6 size 100k expire {period}s "
        f"store http_req_rate({period}s)",
        # Paths are matched percent-decoded, as the servers route them (`/%6Cogin` is
        # `/login` to uvicorn).
        "    acl is_login path,url_dec /login",
        "    acl is_offer path,url_dec -m beg /offers/",
        "    acl is_sync path,url_dec /offers/sync",
        "    http-request track-sc0 src,ipmask(32,64) if is_login METH_POST",
        f"    http-request return status 429 content-type application/json "
        f"string '{{\"error\": \"too many logins from this address; retry later\"}}' "
        f"hdr Retry-After {period} hdr Cache-Control \"private, no-store\" "
        f"if is_login METH_POST {{ sc_http_req_rate(0) gt {rate} }}",
        "    http-request return status 404 content-type application/json "
        "string '{\"error\": \"not found\"}' if { path,url_dec /metrics }",
    ]
    metrics_host, metrics_port = settings.front_door_metrics_host_port
    metrics = [
        "",
        # For operators only, on an address of its own: HAProxy's Prometheus exporter.
        "frontend metrics",
        f"    bind {_hostport(_checked_host(metrics_host, 'front_door_metrics_listen'), metrics_port)}",
        "    no log",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "    http-request return status 404 content-type application/json "
        "string '{\"error\": \"not found\"}'",
    ]
    for region in regions:
        lines.append(f"    use_backend edge_{region} if is_offer !is_sync "
                     f"{{ req.cook({REGION_COOKIE}) -m str {region} }}")
    lines += [
        f"    use_backend edge_{regions[0]} if is_offer !is_sync",
        "    default_backend origin",
        "",
        "backend origin",
        # Never resend a login: the origin may have written it before the connection broke.
        "    http-request disable-l7-retry if METH_POST",
        "    option httpchk GET /readyz",
        "    http-check expect status 200",
        # From a pinned address, the one the origin trusts (``source_address``).
        f"    server origin {_hostport(origin_address(settings), settings.origin_port)} "
        f"source {source_address(settings)} check {check}",
    ]
    edge_host = _checked_host(connectable(settings.edge_host), "edge_host")
    ports = settings.edge_ports
    for region in regions:
        lines += ["", f"backend edge_{region}",
                  "    option httpchk GET /readyz",
                  "    http-check expect status 200"]
        for i, server in enumerate(failover_order(regions, region)):
            backup = " backup" if i else ""
            lines.append(f"    server {server} {_hostport(edge_host, ports[server])} "
                         f"check {check}{backup} {PASSIVE_CHECK}")
    return "\n".join([*lines, *metrics]) + "\n"


def _binds(settings: Settings, host: str, port: int) -> list[str]:
    """The front door's listeners: HTTPS (TLS 1.2 at least, ALPN h2 and http/1.1) and a
    plain one that redirects; one plain listener when TLS is off."""
    if not settings.front_door_tls:
        return [f"    bind {_hostport(host, port)}"]
    http_host, http_port = settings.front_door_http_host_port
    http_host = (_checked_host(http_host, "front_door_http_listen")
                 if http_host not in _WILDCARDS else http_host)
    pem = str(tls_pem(settings))
    if any(c.isspace() for c in pem):
        raise FrontDoorError(f"the certificate's path {pem!r} has spaces, which HAProxy's "
                             "configuration cannot hold")
    return [f"    bind {_hostport(host, port)} ssl crt {pem} alpn h2,http/1.1 "
            "ssl-min-ver TLSv1.2",
            f"    bind {_hostport(http_host, http_port)}"]


def write_config(settings: Settings) -> Path:
    """Render the configuration into ``<home>/front-door/haproxy.cfg``; returns its path."""
    path = config_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_config(settings))
    return path


def haproxy_binary() -> str:
    """The haproxy executable.

    Raises:
        FrontDoorError: not installed; the message gives the install command.
    """
    found = shutil.which("haproxy") or next(
        (p for p in SBIN_CANDIDATES if Path(p).exists()), None)
    if found is None:
        raise FrontDoorError(f"haproxy is not installed; install it with `{INSTALL_HINT}`, "
                             f"or run without the front door ({env_var('front_door')}=false)")
    return found


def check_config(binary: str, path: Path) -> None:
    """``haproxy -c``: the configuration is valid.

    Raises:
        FrontDoorError: HAProxy refused it; the message quotes HAProxy.
    """
    result = subprocess.run([binary, "-c", "-f", str(path)], capture_output=True,
                            text=True, timeout=30)
    if result.returncode != 0:
        raise FrontDoorError(f"haproxy refused {path}:\n{result.stdout}{result.stderr}")


def run(settings: Settings) -> int:
    """Render and check the configuration, then run HAProxy in the foreground until it exits.

    SIGTERM and SIGINT are passed on to HAProxy (it stops at once), and
    HAProxy is killed with us should we die first. Returns HAProxy's exit code.

    Raises:
        FrontDoorError: HAProxy is missing or refused the configuration.
    """
    binary = haproxy_binary()
    path = write_config(settings)
    check_config(binary, path)
    # -db: foreground, logs to stdout; -Ws would be the systemd master mode.
    child = subprocess.Popen([binary, "-db", "-f", str(path)], stdin=subprocess.DEVNULL,
                             preexec_fn=_die_with_parent)

    def forward(signum: int, frame: FrameType | None) -> None:
        child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    code = child.wait()
    return code if code >= 0 else 128 - code


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when its parent dies (Linux ``PR_SET_PDEATHSIG``)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
