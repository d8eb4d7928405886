"""An ``.npz`` file whose arrays are checked before they are read.

``np.load`` trusts the file: an ``.npy`` header that declares a huge shape makes
it allocate that much memory (MemoryError), an object array raises a bare
ValueError, a corrupt member raises ``zlib.error`` or ``BadZipFile``. Here every
array's header is read first (shape, dtype, bytes), compared with the size the
zip member really holds and with the memory available, and every failure
becomes one :class:`~medcne.errors.DataError` naming the file and the array.

Each message says what is wrong, then how to fix it; the fixes are for data a
user gives (save it with np.savez, write it again). A reader of a file that
medcne wrote itself gives its own ``remedy`` instead (a run's
``embedding.npz``: make the run again).
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .memory import check_memory

# What reading a damaged npz raises, from zipfile, zlib, numpy's header parser and allocator.
READ_ERRORS = (
    ValueError, OSError, EOFError, KeyError, zlib.error, zipfile.BadZipFile, zipfile.LargeZipFile,
    NotImplementedError, RuntimeError, MemoryError, SyntaxError, TypeError, UnicodeDecodeError,
)


def _explain(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:120]}" if text else type(exc).__name__


class NpzArrays:
    """The arrays of one ``.npz`` file (a context manager).

    Parameters
    ----------
    path : Path
        The file. Opening fails with DataError when it is not a readable zip.
    remedy : str, optional
        The fix that ends every message about the file's contents (not an
        archive, a damaged or object array), instead of the advice for data a
        user gives; for a file that medcne wrote, e.g. ``"make the run again"``.
        A file that cannot be opened, or an array that does not fit in memory,
        keeps its own fix (check the permissions, use more memory).

    Attributes
    ----------
    keys : set of str
        The names of the arrays.
    names : list of str
        The same names, in the file's order.
    """

    def __init__(self, path: Path, remedy: str | None = None):
        self.path = Path(path)
        self.remedy = remedy
        try:
            # Opened here, so that it is closed here whatever np.load does on a damaged file.
            self._file = open(self.path, "rb")
        except OSError as exc:
            raise DataError(f"{self.path}: cannot read ({exc.strerror or exc}); check the path and its permissions") from None
        try:
            # np.load takes anything that is neither a zip nor an .npy for a pickle: say what it is instead.
            head = self._file.read(6)
            self._file.seek(0)
            if not head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY")):
                raise self._error("not an .npz archive (it does not start as a zip file does)",
                                  "give a file written by np.savez, or name the file after its format")
            self._npz = np.load(self._file, allow_pickle=False)
            if not isinstance(self._npz, np.lib.npyio.NpzFile):  # a plain .npy renamed .npz
                raise self._error("holds one bare array, not an .npz archive", "save it with np.savez")
            self.names = list(self._npz.files)
            self.keys = set(self.names)
        except DataError:
            self._file.close()
            raise
        except READ_ERRORS as exc:
            self._file.close()
            raise self._error(f"cannot read as .npz ({_explain(exc)})",
                              "is the file complete? Write or download it again") from None
        except BaseException:
            self._file.close()
            raise

    def _error(self, what: str, fix: str | None = None, joint: str = "; ") -> DataError:
        """DataError ``"{path}: {what}{joint}{fix}"``; with a ``remedy``, ``"{path}: {what}; {remedy}"``."""
        if self.remedy is not None:
            return DataError(f"{self.path}: {what}; {self.remedy}")
        return DataError(f"{self.path}: {what}" + (f"{joint}{fix}" if fix else ""))

    def __enter__(self) -> NpzArrays:
        return self

    def __exit__(self, *exc) -> None:
        self._npz.close()
        self._file.close()

    def header(self, key: str) -> tuple[tuple[int, ...], np.dtype]:
        """(shape, dtype) of array ``key`` from its header, without reading the data."""
        member = f"{key}.npy"
        try:
            info = self._npz.zip.getinfo(member)
            with self._npz.zip.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                read_header = {
                    (1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0,
                }.get(version)
                if read_header is None:
                    raise ValueError(f".npy format version {version} is not supported")
                shape, _, dtype = read_header(fh)
                header_bytes = fh.tell()
        except READ_ERRORS as exc:
            raise self._error(f"array {key!r} has no readable .npy header ({_explain(exc)}); "
                              "the file is corrupt or not written by numpy", "write it again", ": ") from None
        if dtype.hasobject:
            raise self._error(f"array {key!r} holds Python objects (dtype object), which medcne does not load "
                              "(unpickling can run code)", "store numbers, and text as fixed-width strings (np.str_)")
        if np.prod([max(int(s), 1) for s in shape], dtype=np.float64) * max(dtype.itemsize, 1) >= 2**62:
            raise self._error(f"array {key!r} declares the impossible shape {shape}; the file is corrupt")
        nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        if nbytes > info.file_size - header_bytes:
            raise self._error(f"array {key!r} declares shape {shape} ({nbytes:,} bytes) but holds only "
                              f"{max(info.file_size - header_bytes, 0):,} bytes; the file is truncated or corrupt",
                              "write it again", ": ")
        return tuple(int(s) for s in shape), dtype

    def nbytes(self, key: str) -> int:
        """Bytes array ``key`` takes in memory once read."""
        shape, dtype = self.header(key)
        return int(np.prod(shape, dtype=np.float64)) * dtype.itemsize

    def load(self, key: str) -> np.ndarray:
        """Read array ``key`` after checking its header and the memory it needs."""
        shape, dtype = self.header(key)
        check_memory(
            int(np.prod(shape, dtype=np.float64)) * dtype.itemsize, str(self.path), f"array {key!r} of shape {shape} ({dtype})",
            # Storing less is advice for data a user gives; a file with a remedy is as its writer made it.
            "use a machine with more memory" + ("" if self.remedy else " or store a smaller part of the data"),
        )
        try:
            return self._npz[key]
        except READ_ERRORS as exc:
            raise self._error(f"cannot read array {key!r} ({_explain(exc)}); the file is corrupt or incomplete",
                              "write or download it again", ": ") from None
