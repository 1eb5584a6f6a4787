

def test_socket_family_rule_closes_exotic_families_for_computed_families():
    from trimcage.policy.builder import ADDRESS_FAMILIES, socket_family_rule
    from trimcage.policy.seccomp import make_seccomp

    assert socket_family_rule((2,)) == (2,)                     # every site known: exactly those
    assert socket_family_rule(None) == ADDRESS_FAMILIES         # computed: unix/inet/inet6
    assert socket_family_rule(None, (16,)) == (1, 2, 10, 16)    # the trace saw netlink
    prof = make_seccomp({"socket"}, {"socket": {"0": socket_family_rule(None)}})
    values = sorted(a["value"] for r in prof["syscalls"] if r["names"] == ["socket"] for a in r["args"])
    assert values == [1, 2, 10] and 17 not in values            # AF_PACKET denied
