"""Helpers for the hostile-input and fuzz tests: run `medcne info` in-process and check its one-line answer."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from medcne.cli import main


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time (to show nothing was written)."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def info_answer(capfd, *argv: str) -> tuple[int, str, str]:
    """Run ``medcne info ARGV`` in-process; (exit code, stdout, stderr), stderr read at the fd level."""
    capfd.readouterr()
    rc = main(["info", *argv])
    out, err = capfd.readouterr()
    return rc, out, err


def check_one_line_error(rc: int, out: str, err: str) -> str:
    """Exit 2, nothing on stdout, exactly one line on stderr without a traceback; returns that line."""
    assert rc == 2, (rc, out[-500:], err[-500:])
    assert out == ""
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("medcne info: error: ") and "Traceback" not in err
    return lines[0]


def png_bytes(width: int, height: int, pixels: np.ndarray | None = None, bit_depth: int = 8) -> bytes:
    """A PNG written by hand: gray (colour type 0) or RGB (2); the IHDR may declare any size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    if pixels is None:
        pixels = np.zeros((1, 1), np.uint8)
    colour = 2 if pixels.ndim == 3 else 0
    dtype = ">u2" if bit_depth == 16 else np.uint8
    raw = b"".join(b"\x00" + row.astype(dtype).tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def npz_with_header(path: Path, key: str, header_shape: tuple[int, ...], data: bytes, dtype: str = "|u1") -> None:
    """A valid zip whose .npy member declares ``header_shape`` but holds only ``data``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": header_shape})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{key}.npy", buf.getvalue() + data)
