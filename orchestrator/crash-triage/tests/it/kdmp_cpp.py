"""Reads hvlab dumps with the C++ kdmp-parser (PyPI `kdmp-parser`), an implementation
independent of ours, and prints what it sees as one JSON object per dump.

Usage: python3 kdmp_cpp.py DUMP...
Module list: walks PsLoadedModuleList through the parser's own virtual-memory reads
(KLDR_DATA_TABLE_ENTRY: InLoadOrderLinks @0, DllBase @0x30, SizeOfImage @0x40,
BaseDllName @0x58), as a debugger does.
Unloaded drivers: the binding exposes no list, so the script follows KDDEBUGGER_DATA64
(header KdDebuggerDataBlock) +0x220 MmUnloadedDrivers / +0x228 MmLastUnloadedDriver to the
UNLOADED_DRIVERS array (Name @0, StartAddress @0x10, EndAddress @0x18), the way `lm`
lists unloaded modules. Stack: the binding exposes no unwinder either; the script reads the
qwords from the context's Rsp up and keeps those inside a loaded or unloaded image.
"""
import json
import struct
import sys

import kdmp_parser


def read(dump, va, size):
    out = b""
    while len(out) < size:
        page = dump.read_virtual_page(va & ~0xFFF)
        if page is None:
            raise ValueError(f"virtual address {va:#x} is not in the dump")
        off = va & 0xFFF
        chunk = bytes(page[off : off + size - len(out)])
        out += chunk
        va += len(chunk)
    return out


def u64(dump, va):
    return struct.unpack("<Q", read(dump, va, 8))[0]


def modules(dump, head):
    found = []
    entry = u64(dump, head)
    while entry != head and len(found) < 512:
        base = u64(dump, entry + 0x30)
        size = struct.unpack("<I", read(dump, entry + 0x40, 4))[0]
        length = struct.unpack("<H", read(dump, entry + 0x58, 2))[0]
        buf = u64(dump, entry + 0x60)
        name = read(dump, buf, length).decode("utf-16-le")
        found.append({"name": name, "base": base, "size": size})
        entry = u64(dump, entry)
    return found


def unicode(dump, at):
    length = struct.unpack("<H", read(dump, at, 2))[0]
    return read(dump, u64(dump, at + 8), length).decode("utf-16-le")


def unloaded(dump, kdbg):
    if kdbg == 0 or read(dump, kdbg + 0x10, 4) != b"KDBG":
        return []
    array = u64(dump, u64(dump, kdbg + 0x220))
    count = struct.unpack("<I", read(dump, u64(dump, kdbg + 0x228), 4))[0]
    found = []
    for i in range(min(count, 50)):
        entry = array + i * 0x28
        start, end = u64(dump, entry + 0x10), u64(dump, entry + 0x18)
        found.append({"name": unicode(dump, entry), "base": start, "size": end - start})
    return found


def stack(dump, rsp, images):
    found = []
    for i in range(0x800 // 8):
        try:
            value = u64(dump, rsp + 8 * i)
        except ValueError:
            break
        if any(m["base"] <= value < m["base"] + m["size"] for m in images):
            found.append(value)
    return found


def main():
    for path in sys.argv[1:]:
        try:
            dump = kdmp_parser.KernelDumpParser(path)
        except Exception as e:  # the parser's refusal is the finding
            print(json.dumps({"path": path, "error": str(e)}))
            continue
        h, c = dump.header, dump.context
        mods = modules(dump, h.PsLoadedModuleList)
        gone = unloaded(dump, h.KdDebuggerDataBlock)
        print(
            json.dumps(
                {
                    "path": path,
                    "type": str(dump.type),
                    "code": h.BugCheckCode,
                    "params": list(h.BugCheckCodeParameter),
                    "rip": c.Rip,
                    "mxcsr": [c.MxCsr, c.MxCsr2],
                    "modules": mods,
                    "unloaded": gone,
                    "stack": stack(dump, c.Rsp, mods + gone),
                }
            )
        )


if __name__ == "__main__":
    main()
