"""A small lazy ELF reader over pyelftools, in pyelftools' vocabulary.

:class:`ElfObject` parses only the header on construction; everything else
(program headers, dynamic entries, symbols, relocations, PLT slots) is read
on first use and cached. Every pyelftools or struct failure becomes an
:class:`~trimcage.elf.interface.ElfError` naming the file, never a traceback.
"""

from __future__ import annotations

import io
import struct
from functools import cached_property
from typing import Any, Callable, Iterator, TypeVar

from elftools.common.exceptions import ELFError as _PyElfError
from elftools.elf.elffile import ELFFile

from trimcage.elf.interface import ElfError

T = TypeVar("T")

SHF_EXECINSTR = 0x4
SHF_ALLOC = 0x2
PF_X = 0x1

R_X86_64_64 = 1
R_X86_64_GLOB_DAT = 6
R_X86_64_JUMP_SLOT = 7
R_X86_64_RELATIVE = 8
R_X86_64_IRELATIVE = 37


def is_elf(data: bytes) -> bool:
    """True if ``data`` starts with the ELF magic."""
    return data[:4] == b"\x7fELF"


class ElfObject:
    """One ELF file held in memory (``data``), named ``name`` in errors."""

    def __init__(self, data: bytes, name: str):
        self.name = name
        self.data = data
        if not is_elf(data):
            raise ElfError(f"{name}: not an ELF file")
        self._f = self._guard(lambda: ELFFile(io.BytesIO(data)))
        if self._f.elfclass != 64 or self._f["e_machine"] != "EM_X86_64":
            raise ElfError(f"{name}: unsupported ELF ({self._f.elfclass}-bit {self._f['e_machine']}); "
                           "only x86-64 is analysed")

    # --- guards -------------------------------------------------------------

    def _guard(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except ElfError:
            raise
        except (_PyElfError, struct.error, ValueError, KeyError, IndexError, TypeError,
                AttributeError, AssertionError, UnicodeDecodeError, OverflowError, EOFError,
                MemoryError) as e:
            raise ElfError(f"{self.name}: malformed ELF: {type(e).__name__}: {e}") from e

    # --- header -------------------------------------------------------------

    @property
    def e_type(self) -> str:
        return str(self._f["e_type"])

    @property
    def entry(self) -> int:
        return int(self._f["e_entry"])

    # --- segments -----------------------------------------------------------

    @cached_property
    def _segments(self) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            out = []
            for i in range(self._f.num_segments()):
                h = self._f._get_segment_header(i)
                out.append({k: h[k] for k in ("p_type", "p_flags", "p_offset", "p_vaddr",
                                              "p_filesz", "p_memsz")})
            return out
        return self._guard(read)

    def iter_segments(self, p_type: str | None = None) -> Iterator[dict[str, Any]]:
        """Program headers as dicts, optionally only those of ``p_type``."""
        for s in self._segments:
            if p_type is None or s["p_type"] == p_type:
                yield s

    def has_segment(self, p_type: str) -> bool:
        return any(True for _ in self.iter_segments(p_type))

    @cached_property
    def interp(self) -> str | None:
        """The PT_INTERP path, None if there is none."""
        for s in self.iter_segments("PT_INTERP"):
            raw = self.data[s["p_offset"]:s["p_offset"] + s["p_filesz"]]
            return raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        return None

    def read_vaddr(self, vaddr: int, size: int) -> bytes:
        """Bytes at virtual address ``vaddr`` from the file (b"" outside file-backed loads)."""
        for s in self.iter_segments("PT_LOAD"):
            if s["p_vaddr"] <= vaddr and vaddr + size <= s["p_vaddr"] + s["p_filesz"]:
                off = s["p_offset"] + vaddr - s["p_vaddr"]
                return self.data[off:off + size]
        return b""

    # --- sections -----------------------------------------------------------

    @cached_property
    def _sections(self) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            out = []
            for s in self._f.iter_sections():
                out.append({"name": s.name, "type": s["sh_type"], "flags": s["sh_flags"],
                            "addr": s["sh_addr"], "offset": s["sh_offset"], "size": s["sh_size"]})
            return out
        return self._guard(read)

    def iter_sections(self) -> Iterator[dict[str, Any]]:
        return iter(self._sections)

    def get_section_by_name(self, name: str) -> dict[str, Any] | None:
        """The first section called ``name``; None if no such section exists."""
        for s in self._sections:
            if s["name"] == name:
                return s
        return None

    def has_section(self, name: str) -> bool:
        return self.get_section_by_name(name) is not None

    def section_data(self, sec: dict[str, Any]) -> bytes:
        if sec["type"] == "SHT_NOBITS":
            return b""
        return self.data[sec["offset"]:sec["offset"] + sec["size"]]

    def iter_code_ranges(self) -> Iterator[tuple[str, int, bytes]]:
        """(name, vaddr, bytes) of executable code: SHF_EXECINSTR sections, else
        executable PT_LOAD segments when the file has no section headers."""
        secs = [s for s in self._sections if s["flags"] & SHF_EXECINSTR and s["flags"] & SHF_ALLOC
                and s["type"] != "SHT_NOBITS" and s["size"]]
        if secs:
            for s in secs:
                yield s["name"], s["addr"], self.section_data(s)
            return
        for seg in self.iter_segments("PT_LOAD"):
            if seg["p_flags"] & PF_X:
                yield "LOAD", seg["p_vaddr"], self.data[seg["p_offset"]:seg["p_offset"] + seg["p_filesz"]]

    def iter_data_ranges(self) -> Iterator[tuple[int, bytes]]:
        """(vaddr, bytes) of allocated, non-executable, file-backed data."""
        secs = [s for s in self._sections if s["flags"] & SHF_ALLOC and not s["flags"] & SHF_EXECINSTR
                and s["type"] not in ("SHT_NOBITS", "SHT_NOTE") and s["size"]
                and s["name"] not in (".dynsym", ".dynstr", ".symtab", ".strtab", ".gnu.hash", ".hash",
                                      ".gnu.version", ".gnu.version_r", ".gnu.version_d", ".rela.dyn",
                                      ".rela.plt", ".eh_frame", ".eh_frame_hdr", ".gcc_except_table",
                                      ".interp", ".dynamic")]
        if secs or self._sections:
            for s in secs:
                yield s["addr"], self.section_data(s)
            return
        for seg in self.iter_segments("PT_LOAD"):
            if not seg["p_flags"] & PF_X:
                yield seg["p_vaddr"], self.data[seg["p_offset"]:seg["p_offset"] + seg["p_filesz"]]

    # --- dynamic section ----------------------------------------------------

    @cached_property
    def _dynamic(self) -> list[tuple[str, Any]]:
        def read() -> list[tuple[str, Any]]:
            out: list[tuple[str, Any]] = []
            for seg in self._f.iter_segments():
                if seg["p_type"] == "PT_DYNAMIC":
                    for tag in seg.iter_tags():
                        t = tag.entry.d_tag
                        if t in ("DT_NEEDED",):
                            out.append((t, tag.needed))
                        elif t == "DT_RPATH":
                            out.append((t, tag.rpath))
                        elif t == "DT_RUNPATH":
                            out.append((t, tag.runpath))
                        elif t == "DT_SONAME":
                            out.append((t, tag.soname))
                        else:
                            out.append((str(t), tag.entry.d_val))
                    break
            return out
        return self._guard(read)

    def iter_dynamic(self, tag: str | None = None) -> Iterator[Any]:
        for t, v in self._dynamic:
            if tag is None or t == tag:
                yield v if tag else (t, v)

    @property
    def needed(self) -> tuple[str, ...]:
        return tuple(self.iter_dynamic("DT_NEEDED"))

    @property
    def rpath(self) -> str | None:
        return next(self.iter_dynamic("DT_RPATH"), None)

    @property
    def runpath(self) -> str | None:
        return next(self.iter_dynamic("DT_RUNPATH"), None)

    @property
    def soname(self) -> str | None:
        return next(self.iter_dynamic("DT_SONAME"), None)

    @property
    def is_dynamic(self) -> bool:
        return self.has_segment("PT_DYNAMIC")

    def iter_init_fini(self) -> Iterator[int]:
        """Addresses of DT_INIT, DT_FINI and the entries of the init/fini/preinit arrays."""
        for t in ("DT_INIT", "DT_FINI"):
            for v in self.iter_dynamic(t):
                yield int(v)
        for name in (".init_array", ".fini_array", ".preinit_array"):
            sec = self.get_section_by_name(name)
            if sec:
                raw = self.section_data(sec)
                for (v,) in struct.iter_unpack("<Q", raw[:len(raw) // 8 * 8]):
                    if v not in (0, 0xFFFFFFFFFFFFFFFF):
                        yield v
        init = self.get_section_by_name(".init")
        if init:
            yield init["addr"]

    # --- symbols ------------------------------------------------------------

    @cached_property
    def _symbols(self) -> list[tuple[str, str, int, int, str, str, bool]]:
        """(name, type, value, size, bind, table, defined) for .symtab and .dynsym."""
        def read() -> list[tuple[str, str, int, int, str, str, bool]]:
            out = []
            for secname in (".dynsym", ".symtab"):
                sec = self._f.get_section_by_name(secname)
                if sec is None or not hasattr(sec, "iter_symbols"):
                    continue
                for sym in sec.iter_symbols():
                    out.append((sym.name, sym["st_info"]["type"], sym["st_value"], sym["st_size"],
                                sym["st_info"]["bind"], secname, sym["st_shndx"] != "SHN_UNDEF"))
            return out
        return self._guard(read)

    def iter_symbols(self, table: str | None = None) -> Iterator[tuple[str, str, int, int, str, str, bool]]:
        for s in self._symbols:
            if table is None or s[5] == table:
                yield s

    def iter_function_symbols(self) -> Iterator[tuple[str, int, int]]:
        """(name, value, size) of defined FUNC/IFUNC symbols."""
        for name, typ, value, size, _bind, _tab, defined in self._symbols:
            if defined and value and typ in ("STT_FUNC", "STT_LOOS", "STT_GNU_IFUNC"):
                yield name, value, size

    @cached_property
    def exports(self) -> dict[str, list[int]]:
        """Defined global/weak .dynsym symbols: name -> values (all versions); {} if none."""
        out: dict[str, list[int]] = {}
        for name, typ, value, _size, bind, tab, defined in self._symbols:
            if tab == ".dynsym" and defined and name and bind in ("STB_GLOBAL", "STB_WEAK", "STB_GNU_UNIQUE") \
                    and typ in ("STT_FUNC", "STT_GNU_IFUNC", "STT_LOOS", "STT_NOTYPE"):
                out.setdefault(name, [])
                if value not in out[name]:
                    out[name].append(value)
        return out

    def get_symbol_by_name(self, name: str) -> list[int]:
        """Values of the defined exported symbol ``name``; [] if it is not defined."""
        return self.exports.get(name, [])

    # --- relocations --------------------------------------------------------

    @cached_property
    def relocations(self) -> list[tuple[int, int, str, int, int]]:
        """(offset, type, symbol name, symbol value, addend) of every RELA entry."""
        def read() -> list[tuple[int, int, str, int, int]]:
            out = []
            for sec in self._f.iter_sections():
                if sec["sh_type"] != "SHT_RELA" or not hasattr(sec, "iter_relocations"):
                    continue
                symtab = None
                if sec["sh_link"]:
                    symtab = self._f.get_section(sec["sh_link"])
                cache: dict[int, tuple[str, int]] = {}
                for r in sec.iter_relocations():
                    sidx = r["r_info_sym"]
                    name, value = "", 0
                    if sidx and symtab is not None and hasattr(symtab, "get_symbol"):
                        if sidx not in cache:
                            sym = symtab.get_symbol(sidx)
                            cache[sidx] = (sym.name, sym["st_value"])
                        name, value = cache[sidx]
                    out.append((r["r_offset"], r["r_info_type"], name, value,
                                r["r_addend"] if r.is_RELA() else 0))
            return out
        return self._guard(read)

    def iter_relocations(self, types: tuple[int, ...] | None = None) -> Iterator[tuple[int, int, str, int, int]]:
        for r in self.relocations:
            if types is None or r[1] in types:
                yield r
