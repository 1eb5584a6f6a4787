"""The lazy ELF reader and malformed input."""

from __future__ import annotations

import os

import pytest

from trimcage.elf.interface import ElfError
from trimcage.elf.reader import ElfObject
from trimcage.elf.summary import summarize


def test_reads_gcc_binary(progs):
    data = progs["shared"].read_bytes()
    elf = ElfObject(data, "prog")
    assert elf.needed == ("libc.so.6",)
    assert elf.interp == "/lib64/ld-linux-x86-64.so.2"
    assert elf.has_segment("PT_INTERP") and elf.has_section(".text")
    assert elf.get_section_by_name(".no-such-section") is None
    assert "main" in {n for n, _v, _s in elf.iter_function_symbols()}
    assert any(name == "socket" for _o, _t, name, _v, _a in elf.iter_relocations())
    assert list(elf.iter_init_fini())


def test_static_binary_kind(progs):
    s = summarize(progs["static"].read_bytes(), "prog-static")
    assert s["kind"] == "static" and s["needed"] == [] and s["interp"] is None


def _cases(progs):
    good = progs["shared"].read_bytes()
    return {
        "empty": b"",
        "garbage": os.urandom(4096),
        "magic-only": b"\x7fELF",
        "truncated-header": good[:40],
        "truncated-body": good[:700],
        "bad-phoff": good[:32] + (2**62).to_bytes(8, "little") + good[40:],
        "bad-shoff": good[:40] + (2**40).to_bytes(8, "little") + good[48:],
        "corrupt-middle": good[:64] + os.urandom(2000) + good[2064:],
    }


@pytest.mark.parametrize("case", ["empty", "garbage", "magic-only", "truncated-header", "truncated-body",
                                  "bad-phoff", "bad-shoff", "corrupt-middle"])
def test_malformed_raises_elf_error(progs, case):
    data = _cases(progs)[case]
    try:
        summarize(data, f"/app/{case}")
    except ElfError as e:
        assert f"/app/{case}" in str(e)
        return
    # A corruption pyelftools tolerates must still give a well-formed summary.
    assert case in ("corrupt-middle", "bad-shoff", "truncated-body")
