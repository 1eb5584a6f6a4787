"""Probe parsing (pure) and probes against a real server in a container's network namespace."""

import json

import pytest

from tests.trace.conftest import config_file, leftovers, tc
from trimcage.trace.interface import ParseError, Probe
from trimcage.trace.probes import load_probe_file, parse_probe_url, probe_from_json, unescape


def test_parse_urls_and_json_forms():
    assert parse_probe_url("http://127.0.0.1:80/x") == Probe("http", "http://127.0.0.1:80/x")
    assert parse_probe_url("https://127.0.0.1:8443/").kind == "https"
    assert parse_probe_url("tcp://127.0.0.1:6379", "PING\r\n", "+PONG") == \
        Probe("tcp", "127.0.0.1:6379", "PING\r\n", "+PONG")
    assert probe_from_json({"http": "http://127.0.0.1:80/", "expect_status": 200}).expect_status == 200
    assert probe_from_json({"cmd": "pg_isready -h 127.0.0.1"}) == Probe("cmd", "pg_isready -h 127.0.0.1")
    assert probe_from_json({"exec": "nginx -t"}).kind == "exec"
    assert unescape(r"PING\r\n") == "PING\r\n"


@pytest.mark.parametrize("bad", [{"http": "ftp://x/"}, {"tcp": "nohost"}, {"tcp": "h:99999"},
                                 {"http": "http://a/", "tcp": "a:1"}, {}, ["x"]])
def test_bad_probes(bad):
    with pytest.raises(ParseError):
        probe_from_json(bad)


def test_probe_file_yaml_and_json(tmp_path):
    y = tmp_path / "p.yaml"
    y.write_text('- tcp: "127.0.0.1:6379"\n  send: "PING\\r\\n"\n  expect: "+PONG"\n- cmd: "true"\n')
    assert load_probe_file(str(y)) == [Probe("tcp", "127.0.0.1:6379", "PING\r\n", "+PONG"), Probe("cmd", "true")]
    j = tmp_path / "p.json"
    j.write_text(json.dumps({"probes": [{"http": "http://127.0.0.1:80/"}]}))
    assert load_probe_file(str(j)) == [Probe("http", "http://127.0.0.1:80/")]
    (tmp_path / "bad").write_text("{: nope")
    with pytest.raises(ParseError, match="bad"):
        load_probe_file(str(tmp_path / "bad"))


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.samples
def test_cmd_exec_and_tcp_probes_on_nginx(tmp_path, nginx_root):
    from tests.trace.conftest import NGINX_CONFIG
    out = tmp_path / "out"
    cp = tc("trace", "--rootfs", str(nginx_root), "--image-config", config_file(tmp_path, NGINX_CONFIG),
            "-o", str(out), "--probe", "tcp://127.0.0.1:80", "--probe-send", r"GET / HTTP/1.0\r\n\r\n",
            "--probe-expect", "200 OK", "--probe-cmd", "ip -o link show lo | grep -q LOOPBACK",
            "--exec", "test -f /etc/nginx/nginx.conf", "--duration", "0")
    assert cp.returncode == 0, cp.stderr
    doc = json.loads((out / "trace.json").read_text())
    assert [p["ok"] for p in doc["probes"]] == [True, True, True]
    assert [p["status"] for p in doc["probes"]] == [None, 0, 0]
    cp = tc("trace", "--rootfs", str(nginx_root), "--image-config", config_file(tmp_path, NGINX_CONFIG),
            "-o", str(out), "--exec", "test -f /nonexistent", "--ready-timeout", "2")
    assert cp.returncode == 3 and "exit 1" in cp.stderr
    assert leftovers() == []
