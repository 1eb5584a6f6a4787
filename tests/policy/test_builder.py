

def test_socket_family_rule_closes_exotic_families_for_computed_families():
    from trimcage.policy.builder import ADDRESS_FAMILIES, socket_family_rule
    from trimcage.policy.seccomp import make_seccomp

    assert socket_family_rule((2,)) == (2,)                     # every site known: exactly those
    assert socket_family_rule(None) == ADDRESS_FAMILIES         # computed: unix/inet/inet6
    assert socket_family_rule(None, (16,)) == (1, 2, 10, 16)    # the trace saw netlink
    prof = make_seccomp({"socket"}, {"socket": {"0": socket_family_rule(None)}})
    values = sorted(a["value"] for r in prof["syscalls"] if r["names"] == ["socket"] for a in r["args"])
    assert values == [1, 2, 10] and 17 not in values            # AF_PACKET denied


def test_read_only_root_needs_a_trace():
    from trimcage.policy.builder import build_policy
    from trimcage.policy.interface import PolicyInputs

    assert build_policy(PolicyInputs(syscalls=frozenset({"read"}), mode="dynamic")).read_only_rootfs
    assert not build_policy(PolicyInputs(syscalls=frozenset({"read"}), mode="static")).read_only_rootfs
    assert not build_policy(PolicyInputs(syscalls=frozenset({"read"}), writes=("/var/lib/x/y",),
                                         mode="combined")).read_only_rootfs


def test_static_mode_capabilities_follow_reachable_syscalls():
    from trimcage.policy.capabilities import minimal_capabilities, static_privileged_ops

    ops = static_privileged_ops({"read", "bind", "chown", "setgroups", "openat", "init_module"})
    assert minimal_capabilities(ops, "0:0") == ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_NET_BIND_SERVICE",
                                                "CAP_SETGID"]
    assert minimal_capabilities(ops, "33:33") == []       # a non-root user gets none


def test_combined_mode_needs_evidence_for_high_risk_syscalls():
    from trimcage.policy.builder import combined_syscalls

    static = {"read", "write", "add_key", "keyctl", "personality", "bind"}
    assert combined_syscalls(static, {"read", "epoll_wait"}) == {"read", "write", "bind", "epoll_wait"}
    assert "keyctl" in combined_syscalls(static, {"keyctl"})          # seen: allowed
