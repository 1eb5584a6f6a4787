"""policy.render: run.sh and k8s.yaml."""

from __future__ import annotations

import subprocess

import yaml

from trimcage.policy.builder import build_policy
from trimcage.policy.interface import PolicyInputs
from trimcage.policy.render import k8s_name, render_k8s, render_run_sh

OPS = ({"op": "bind", "port": 80}, {"op": "setuid", "capability": "CAP_SETUID"})


def _policy(writes=(), user="0:0"):
    return build_policy(PolicyInputs(
        syscalls=frozenset({"read", "write", "socket", "bind", "accept4"}),
        arguments={"socket": {"0": (2,), "1": (1 | 0o2000000,)}},
        privileged_ops=OPS, writes=writes, user=user))


def test_run_sh_is_valid_shell_with_the_policy(tmp_path):
    text = render_run_sh(_policy(), "registry.local/nginx:slim", ports=[80])
    f = tmp_path / "run.sh"
    f.write_text(text)
    assert subprocess.run(["sh", "-n", str(f)]).returncode == 0
    for engine in ("docker run", "podman run"):
        assert text.count(engine) == 1
    for needle in ('--security-opt "seccomp=$HERE/seccomp.json"', "--security-opt no-new-privileges",
                   "--cap-drop ALL", "--cap-add CAP_NET_BIND_SERVICE", "--cap-add CAP_SETUID",
                   "--read-only", "--tmpfs /tmp", "--tmpfs /run", "--user 0:0", "-p 80:80"):
        assert text.count(needle) == 2, needle
    assert "--runtime" not in text and "ulimit" not in text
    assert render_run_sh(_policy(), "registry.local/nginx:slim", ports=[80]) == text


def test_run_sh_writable_root_and_no_caps():
    text = render_run_sh(_policy(writes=("/var/log/x",), user="101:101"), "img")
    assert "--read-only" not in text and "--tmpfs" not in text and "--cap-add" not in text
    assert "--user 101:101" in text


def test_run_sh_executes_the_engine(tmp_path):
    """Run the script with a stand-in ``docker`` on PATH that records its argv."""
    (tmp_path / "seccomp.json").write_text("{}")
    (tmp_path / "run.sh").write_text(render_run_sh(_policy(), "img:1"))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "docker").write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    (bindir / "docker").chmod(0o755)
    cp = subprocess.run(["sh", str(tmp_path / "run.sh"), "/probe", "x y"], capture_output=True,
                        text=True, env={"PATH": f"{bindir}:/usr/bin:/bin"}, check=True)
    argv = cp.stdout.splitlines()
    assert argv[:2] == ["run", "--rm"]
    assert f"seccomp={tmp_path}/seccomp.json" in argv
    assert argv[-3:] == ["img:1", "/probe", "x y"]


def test_k8s_yaml():
    policy = _policy()
    text = render_k8s(policy, "Nginx_Slim", "registry.local/nginx:slim", ports=[80])
    docs = list(yaml.safe_load_all(text))
    assert [d["kind"] for d in docs] == ["SeccompProfile", "Pod"]
    sp, pod = docs
    assert sp["apiVersion"] == "security-profiles-operator.x-k8s.io/v1beta1"
    assert sp["spec"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert sp["spec"]["architectures"] == ["SCMP_ARCH_X86_64"]
    names = {n for r in sp["spec"]["syscalls"] for n in r["names"]}
    assert names == {n for r in policy.seccomp["syscalls"] for n in r["names"]}
    sock = [r for r in sp["spec"]["syscalls"] if r["names"] == ["socket"]][0]
    assert sock["args"] == policy.seccomp["syscalls"][1]["args"]
    sc = pod["spec"]["containers"][0]["securityContext"]
    assert sc["seccompProfile"] == {"type": "Localhost",
                                    "localhostProfile": "trimcage/nginx-slim.json"}
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "SETUID"]}
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert (sc["runAsUser"], sc["runAsGroup"]) == (0, 0)
    mounts = {m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]}
    assert mounts == {"/tmp", "/run"}
    assert pod["spec"]["containers"][0]["ports"] == [{"containerPort": 80}]
    assert render_k8s(policy, "Nginx_Slim", "registry.local/nginx:slim", ports=[80]) == text


def test_k8s_name():
    assert k8s_name("My App/v2") == "my-app-v2"
    assert len(k8s_name("x" * 100)) == 63
