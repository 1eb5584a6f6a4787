"""Go binaries: function starts and names from ``.gopclntab`` (Go 1.18+ layout).

Works on stripped binaries: the pclntab is needed by the Go runtime itself,
so it is always present. Header (magic ``0xfffffff0`` Go 1.18/1.19,
``0xfffffff1`` Go 1.20+): pad, minLC, ptrSize, then nfunc, nfiles,
textStart, funcnameOffset, cuOffset, filetabOffset, pctabOffset, pclnOffset
(pointer-sized); the function table at pclnOffset holds ``nfunc + 1`` pairs
(entry offset from textStart, offset of the ``_func`` record), and a
``_func`` starts with its entry offset and the offset of its name.
"""

from __future__ import annotations

import struct

from trimcage.elf.reader import ElfObject

GO_MAGICS = (0xFFFFFFF0, 0xFFFFFFF1)


def go_functions(elf: ElfObject) -> list[tuple[int, str]]:
    """(entry address, name) of every Go function; [] if there is no usable pclntab."""
    sec = elf.get_section_by_name(".gopclntab")
    if sec is None:
        return []
    raw = elf.section_data(sec)
    try:
        magic, _pad, _minlc, ptrsize = struct.unpack_from("<IHBB", raw, 0)
        if magic not in GO_MAGICS or ptrsize != 8:
            return []
        nfunc, _nfiles, text_start, funcname_off, _cu, _filetab, _pctab, pcln_off = \
            struct.unpack_from("<8Q", raw, 8)
        if text_start == 0:
            text = elf.get_section_by_name(".text")
            text_start = text["addr"] if text else 0
        out: list[tuple[int, str]] = []
        for k in range(nfunc):
            entry_off, func_off = struct.unpack_from("<II", raw, pcln_off + 8 * k)
            _e, name_off = struct.unpack_from("<Ii", raw, pcln_off + func_off)
            start = funcname_off + name_off
            end = raw.find(b"\0", start)
            name = raw[start:end].decode("utf-8", "replace") if end > start else ""
            out.append((text_start + entry_off, name))
        return out
    except struct.error:
        return []
