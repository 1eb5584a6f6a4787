"""policy.capabilities and policy.builder."""

from __future__ import annotations

import pytest

from trimcage.policy.builder import build_policy, writes_outside
from trimcage.policy.capabilities import (ALL_CAPS, DEFAULT_CAPS, capability_rationale,
                                          minimal_capabilities, parse_user)
from trimcage.policy.interface import PolicyError, PolicyInputs

NGINX_OPS = ({"op": "bind", "port": 80, "capability": "CAP_NET_BIND_SERVICE"},
             {"op": "setgid", "gid": 33}, {"op": "setgroups"},
             {"op": "setuid", "uid": 33, "capability": "CAP_SETUID"},
             {"op": "chown", "path": "/var/lib/nginx/body"})


def test_docker_default_caps():
    assert len(DEFAULT_CAPS) == 14 and DEFAULT_CAPS <= ALL_CAPS
    assert "CAP_SYS_ADMIN" not in DEFAULT_CAPS and "CAP_NET_RAW" in DEFAULT_CAPS


def test_minimal_capabilities_for_a_root_service():
    assert minimal_capabilities(NGINX_OPS, "0:0") == ["CAP_CHOWN", "CAP_NET_BIND_SERVICE",
                                                      "CAP_SETGID", "CAP_SETUID"]
    why = capability_rationale(NGINX_OPS, "0:0")
    assert "port 80" in why["CAP_NET_BIND_SERVICE"]
    assert "/var/lib/nginx/body" in why["CAP_CHOWN"]


@pytest.mark.parametrize("ops,expected", [
    (({"op": "bind", "port": 8080},), []),
    (({"op": "bind", "port": 443},), ["CAP_NET_BIND_SERVICE"]),
    (({"op": "socket", "type": "raw", "capability": "net_raw"},), ["CAP_NET_RAW"]),
    (({"op": "open", "path": "/etc/shadow", "capability": "CAP_DAC_OVERRIDE"},),
     ["CAP_DAC_OVERRIDE"]),
    (({"op": "raw_socket"}, {"op": "kill", "pid": 12}), ["CAP_KILL", "CAP_NET_RAW"]),
    ((), []),
])
def test_op_to_capability(ops, expected):
    assert minimal_capabilities(ops, "0") == expected


def test_non_root_user_gets_no_capabilities():
    assert minimal_capabilities(NGINX_OPS, "33:33") == []
    assert build_policy(PolicyInputs(frozenset({"read"}), privileged_ops=NGINX_OPS,
                                     user="101:101")).capabilities == ()


@pytest.mark.parametrize("user", ["www-data", "1:x", "-1:0", ""])
def test_bad_users(user):
    if user == "":
        assert parse_user(user) == (0, 0)
        return
    with pytest.raises(PolicyError):
        parse_user(user)


def test_unknown_capability_is_an_error():
    with pytest.raises(PolicyError, match="CAP_BOGUS"):
        minimal_capabilities(({"op": "x", "capability": "CAP_BOGUS"},), "0:0")


def test_writes_outside_tmpfs_and_volumes():
    assert writes_outside(("/tmp/a", "/run/nginx.pid", "/data/x"), ("/data",)) == []
    assert writes_outside(("/var/log/nginx/error.log", "/tmpx", "/tmp"), ()) == [
        "/tmpx", "/var/log/nginx/error.log"]


def test_build_policy():
    inputs = PolicyInputs(syscalls=frozenset({"read", "socket", "bind"}),
                          arguments={"socket": {"0": (2, 10)}}, privileged_ops=NGINX_OPS,
                          writes=("/var/log/nginx/access.log",), user="0", mode="dynamic")
    p = build_policy(inputs)
    assert p.run_as == "0:0" and p.no_new_privileges and not p.read_only_rootfs
    assert p.capabilities == ("CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_SETGID", "CAP_SETUID")
    j = p.to_json()
    assert list(j) == sorted(j) and j["mode"] == "dynamic"
    assert j["seccomp"]["syscalls"][1]["names"] == ["socket"]
    assert build_policy(PolicyInputs(frozenset({"read"}))).read_only_rootfs
    with pytest.raises(PolicyError):
        build_policy(PolicyInputs(frozenset({"read"}), mode="fast"))
