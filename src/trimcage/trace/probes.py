"""Probes: does the application inside the container answer? (reused by ``verify``)

Probes reach the application inside its own network namespace (a worker
thread ``setns``-ed into ``/proc/PID/ns/net``), so parallel runs never
collide on ports and nothing is published on the host. ``cmd`` probes run a
host command in that namespace (``nsenter --net=``); ``exec`` probes run a
command inside the container (``Container.exec``).

Probe list format (JSON or YAML; shared with sample metadata and verify)::

    [{"http": "http://127.0.0.1:80/", "expect_status": 200},
     {"tcp": "127.0.0.1:6379", "send": "PING\\r\\n", "expect": "+PONG"},
     {"cmd": "pg_isready -h 127.0.0.1"}, {"exec": "nginx -t"}]
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import hashlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.parse
from typing import Any, Callable, Iterable, Sequence, TypeVar

from trimcage.trace.interface import ParseError, Probe, ProbeError, ProbeResult

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- parsing ------------------------------------------------------------------


def probe_from_json(d: Any, where: str = "<probe>") -> Probe:
    """One probe from its JSON/YAML form; raise ParseError naming ``where``."""
    if isinstance(d, str):
        return parse_probe_url(d)
    if not isinstance(d, dict):
        raise ParseError(f"{where}: a probe must be a mapping, got {type(d).__name__}")
    kinds = [k for k in ("http", "https", "tcp", "cmd", "exec") if k in d]
    if len(kinds) != 1:
        raise ParseError(f"{where}: a probe needs exactly one of http, tcp, cmd, exec: {d!r}")
    kind = kinds[0]
    target = str(d[kind])
    if kind in ("http", "https"):
        p = parse_probe_url(target)
        status = d.get("expect_status")
        return Probe(p.kind, p.target, expect_status=int(status) if status is not None else None)
    if kind == "tcp":
        _host_port(target, where)
        return Probe("tcp", target, send=d.get("send"), expect=d.get("expect"))
    return Probe(kind, target)


def load_probe_file(path: str) -> list[Probe]:
    """Read a JSON or YAML list of probes."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode()
    except (OSError, UnicodeDecodeError) as e:
        raise ParseError(f"{path}: cannot read probe file: {e}") from e
    try:
        doc = json.loads(text)
    except ValueError:
        try:
            import yaml
            doc = yaml.safe_load(text)
        except Exception as e:  # yaml.YAMLError and friends
            raise ParseError(f"{path}: neither JSON nor YAML: {e}") from e
    if isinstance(doc, dict) and "probes" in doc:
        doc = doc["probes"]
    if isinstance(doc, dict):
        doc = [doc]
    if not isinstance(doc, list):
        raise ParseError(f"{path}: expected a list of probes")
    return [probe_from_json(d, f"{path}[{i}]") for i, d in enumerate(doc)]


def _host_port(text: str, where: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ParseError(f"{where}: expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def parse_probe_url(url: str, send: str | None = None, expect: str | None = None) -> Probe:
    """``http://H:P/PATH``, ``https://...`` or ``tcp://H:P`` -> Probe."""
    u = urllib.parse.urlsplit(url)
    if u.scheme in ("http", "https"):
        if not u.hostname:
            raise ParseError(f"probe {url!r}: no host")
        return Probe(u.scheme, url)
    if u.scheme == "tcp":
        _host_port(u.netloc, f"probe {url!r}")
        return Probe("tcp", u.netloc, send=send, expect=expect)
    raise ParseError(f"probe {url!r}: scheme must be http, https or tcp")


def unescape(s: str | None) -> str | None:
    """Command-line ``--probe-send 'PING\\r\\n'``: C-style escapes to characters."""
    return None if s is None else s.encode().decode("unicode_escape")


# --- the network namespace --------------------------------------------------


class NetNS:
    """A one-thread executor living in a network namespace (``/proc/PID/ns/net``)."""

    def __init__(self, ns_path: str):
        self.ns_path = ns_path
        self._pool = concurrent.futures.ThreadPoolExecutor(1, initializer=self._enter)

    def _enter(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(self.ns_path, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {self.ns_path}")
        finally:
            os.close(fd)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        return self._pool.submit(fn, *args).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> "NetNS":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _http(url: str, timeout: float) -> tuple[int, bytes]:
    u = urllib.parse.urlsplit(url)
    port = u.port or (443 if u.scheme == "https" else 80)
    if u.scheme == "https":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(u.hostname, port, timeout=timeout,
                                                                       context=ctx)
    else:
        conn = http.client.HTTPConnection(u.hostname, port, timeout=timeout)
    try:
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        conn.request("GET", path, headers={"User-Agent": "trimcage-probe", "Connection": "close"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _tcp(target: str, send: str | None, expect: str | None, timeout: float) -> bytes:
    host, port = _host_port(target, "tcp probe")
    with socket.create_connection((host, port), timeout=timeout) as s:
        if send is None and expect is None:
            return b""
        if send:
            s.sendall(send.encode())
        data = b""
        want = (expect or "").encode()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if want and want in data or not want and data:
                break
        return data


def tcp_connect(ns: NetNS, host: str, port: int, timeout: float = 1.0) -> bool:
    """True if ``host:port`` accepts a TCP connection inside the namespace."""
    def attempt() -> bool:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return True
        except OSError:
            return False
    return ns.call(attempt)


def run_probe(probe: Probe, ns: NetNS, container: Any = None, timeout: float = 5.0) -> ProbeResult:
    """Try ``probe`` once; never raises for a failing application."""
    t0 = time.monotonic()
    try:
        if probe.kind in ("http", "https"):
            status, body = ns.call(_http, probe.target, timeout)
            ok = status == probe.expect_status if probe.expect_status is not None else 200 <= status < 400
            return ProbeResult(probe, ok, status, _digest(body), None if ok else f"HTTP {status}",
                               elapsed_s=time.monotonic() - t0)
        if probe.kind == "tcp":
            data = ns.call(_tcp, probe.target, probe.send, probe.expect, timeout)
            ok = probe.expect is None or probe.expect.encode() in data
            return ProbeResult(probe, ok, None, _digest(data),
                               None if ok else f"reply {data[:60]!r} lacks {probe.expect!r}",
                               elapsed_s=time.monotonic() - t0)
        if probe.kind == "cmd":
            cp = subprocess.run(["nsenter", f"--net={ns.ns_path}", "--", "/bin/sh", "-c", probe.target],
                                capture_output=True, timeout=timeout + 25)
        elif probe.kind == "exec":
            if container is None:
                raise ProbeError("an exec probe needs a container")
            cp = container.exec(probe.target, timeout + 25)
        else:
            raise ProbeError(f"unknown probe kind {probe.kind!r}")
        out = cp.stdout + cp.stderr
        ok = cp.returncode == 0
        last = out.decode(errors="replace").strip().splitlines()
        return ProbeResult(probe, ok, cp.returncode, _digest(out),
                           None if ok else f"exit {cp.returncode}" + (f": {last[-1][:100]}" if last else ""),
                           elapsed_s=time.monotonic() - t0)
    except (OSError, http.client.HTTPException, subprocess.TimeoutExpired, ssl.SSLError) as e:
        return ProbeResult(probe, False, None, None, f"{type(e).__name__}: {e}"[:200],
                           elapsed_s=time.monotonic() - t0)


def wait_ready(probes: Sequence[Probe], ns: NetNS, container: Any, timeout: float,
               exited: Callable[[], bool] = lambda: False) -> list[ProbeResult]:
    """Retry each probe (in order) until it passes or ``timeout`` seconds passed overall.

    Returns one result per probe (the last attempt); stops early when
    ``exited()`` says the container is gone.
    """
    deadline = time.monotonic() + timeout
    results = []
    for probe in probes:
        attempts = 0
        while True:
            attempts += 1
            r = run_probe(probe, ns, container, timeout=min(5.0, max(0.5, deadline - time.monotonic())))
            if r.ok or time.monotonic() >= deadline or exited():
                results.append(ProbeResult(r.probe, r.ok, r.status, r.digest, r.error, attempts, r.elapsed_s))
                break
            time.sleep(0.1)
    return results


def default_probes(ports: Iterable[tuple[int, str]], ns: NetNS, timeout: float,
                   exited: Callable[[], bool]) -> list[Probe]:
    """No probe given: wait until each exposed TCP port accepts a connection, then
    return an HTTP ``GET /`` probe for those that answer HTTP, a tcp probe otherwise."""
    deadline = time.monotonic() + timeout
    out = []
    for port, proto in ports:
        if proto != "tcp":
            continue
        while not tcp_connect(ns, "127.0.0.1", port):
            if time.monotonic() >= deadline or exited():
                raise ProbeError(f"port {port} never accepted a connection within {timeout:g}s")
            time.sleep(0.1)
        try:
            ns.call(_http, f"http://127.0.0.1:{port}/", 3.0)
            out.append(Probe("http", f"http://127.0.0.1:{port}/"))
        except (OSError, http.client.HTTPException):
            out.append(Probe("tcp", f"127.0.0.1:{port}"))
    return out
