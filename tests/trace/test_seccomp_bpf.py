"""The seccomp compiler: profile parsing, BPF output, and enforcement under `trimcage run`."""

import json
import warnings

import pytest

from tests.trace.conftest import config_file, leftovers, tc
from trimcage.trace.interface import ParseError
from trimcage.trace.seccomp_bpf import compile_bpf, load_profile, parse_profile

ALLOW_ALL_BUT = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"]}


def test_docker_default_profile_compiles():
    from importlib.resources import files
    path = str(files("trimcage") / "data" / "docker-default-seccomp.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bpf = compile_bpf(load_profile(path), ["CAP_CHOWN"], path)
    assert len(bpf) % 8 == 0 and len(bpf) > 8 * 100  # struct sock_filter is 8 bytes


def test_unknown_syscall_is_skipped_with_a_warning():
    prof = parse_profile(json.dumps({**ALLOW_ALL_BUT, "syscalls": [
        {"names": ["mkdir", "no_such_call_xyz"], "action": "SCMP_ACT_ERRNO"}]}))
    with pytest.warns(UserWarning, match="no_such_call_xyz"):
        bpf = compile_bpf(prof)
    assert bpf


def test_rule_equal_to_default_is_dropped_and_args_change_the_program():
    base = {**ALLOW_ALL_BUT, "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}
    with_arg = {**ALLOW_ALL_BUT, "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ERRNO",
                                                "args": [{"index": 0, "value": 17, "op": "SCMP_CMP_EQ"}]}]}
    masked = {**ALLOW_ALL_BUT, "syscalls": [{"names": ["clone"], "action": "SCMP_ACT_ERRNO",
                                              "args": [{"index": 0, "value": 0x7E020000, "valueTwo": 0,
                                                        "op": "SCMP_CMP_MASKED_EQ"}]}]}
    plain = compile_bpf(parse_profile(json.dumps(ALLOW_ALL_BUT)))
    assert compile_bpf(parse_profile(json.dumps(base))) == plain
    assert compile_bpf(parse_profile(json.dumps(with_arg))) != plain
    assert compile_bpf(parse_profile(json.dumps(masked))) != plain


def test_includes_caps_select_rules():
    prof = parse_profile(json.dumps({**ALLOW_ALL_BUT, "syscalls": [
        {"names": ["chown"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_ADMIN"]}}]}))
    plain = compile_bpf(parse_profile(json.dumps(ALLOW_ALL_BUT)))
    assert compile_bpf(prof, []) == plain
    assert compile_bpf(prof, ["CAP_SYS_ADMIN"]) != plain


@pytest.mark.parametrize("doc", ['{"syscalls": []}', "not json", '{"defaultAction": "SCMP_ACT_BOGUS"}',
                                 '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], '
                                 '"action": "SCMP_ACT_ERRNO", "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}'])
def test_bad_profiles_raise_parse_error(doc):
    with pytest.raises(ParseError):
        parse_profile(doc, "p.json")


@pytest.mark.root
def test_run_with_mkdir_denied(tmp_path, tiny_root):
    prof = tmp_path / "deny-mkdir.json"
    prof.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    cfg = config_file(tmp_path, {"Entrypoint": ["/bin/t"], "Cmd": ["mkdir"]})
    cp = tc("run", "--rootfs", str(tiny_root), "--image-config", cfg, "--seccomp", str(prof))
    assert cp.returncode == 0, cp.stderr
    assert "mkdir=-1 errno=1\n" in cp.stdout          # EPERM
    assert "open=3 errno=0" in cp.stdout               # the rest works
    assert "rmdir=-1 errno=2" in cp.stdout             # ENOENT: rmdir not filtered
    cp = tc("run", "--rootfs", str(tiny_root), "--image-config", cfg)
    assert "mkdir=0 errno=0" in cp.stdout
    assert leftovers() == []


@pytest.mark.root
def test_run_with_socket_family_rule(tmp_path, tiny_root):
    prof = tmp_path / "no-packet.json"
    prof.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                                "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
                                              "args": [{"index": 0, "value": 17, "op": "SCMP_CMP_EQ"}]}]}))
    cfg = config_file(tmp_path, {"Entrypoint": ["/bin/t", "socket"]})
    cp = tc("run", "--rootfs", str(tiny_root), "--image-config", cfg, "--seccomp", str(prof))
    assert cp.returncode == 0, cp.stderr
    assert "packet=-1 errno=97" in cp.stdout           # EAFNOSUPPORT from errnoRet
    assert "inet=3 errno=0" in cp.stdout
    cp = tc("run", "--rootfs", str(tiny_root), "--image-config", cfg)
    assert "packet=3 errno=0" in cp.stdout              # root with CAP_NET_RAW, no profile
