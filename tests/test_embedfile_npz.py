"""A run's embedding.npz is read through NpzArrays: every damage is one line naming the file, with the
run's remedy ("make the run again"), never the advice meant for a user's own data."""

from __future__ import annotations

import io
import os
import re
import zipfile

import numpy as np
import pytest

from evalhelpers import make_run
from medcne.cli import main
from medcne.datasets.npzfile import NpzArrays
from medcne.embedfile import REMEDY, read_columns
from medcne.errors import DataError, MedcneError
from medcne.runs import read_run

# NpzArrays' fixes for data a user gives: none of them may reach the reader of a run's own file.
USER_ADVICE = ("np.savez", "fixed-width", "download", "write it again", "smaller part", "name the file after")


def arrays_of(run) -> dict[str, np.ndarray]:
    with np.load(run / "embedding.npz") as z:
        return {k: z[k] for k in z.files}


def write_members(path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(f"{name}.npy", data)


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=True)
    return buf.getvalue()


def truncated(run):
    data = (run / "embedding.npz").read_bytes()
    (run / "embedding.npz").write_bytes(data[: len(data) // 2])


def header_lies(run):
    members = {k: npy_bytes(v) for k, v in arrays_of(run).items()}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 2)})
    members["embedding"] = buf.getvalue() + b"\0" * 64
    write_members(run / "embedding.npz", members)


def object_ids(run):
    members = {k: npy_bytes(v) for k, v in arrays_of(run).items()}
    members["ids"] = npy_bytes(np.array([{"id": 1}] * 20, dtype=object))
    write_members(run / "embedding.npz", members)


def corrupt_member(run):
    z = arrays_of(run)
    np.savez_compressed(run / "embedding.npz", **z)
    data = bytearray((run / "embedding.npz").read_bytes())
    start = data.index(b"embedding.npy") + len("embedding.npy") + 40  # inside the compressed stream
    data[start:start + 40] = b"\xff" * 40
    (run / "embedding.npz").write_bytes(bytes(data))


def no_embedding(run):
    z = arrays_of(run)
    del z["embedding"]
    np.savez(run / "embedding.npz", **z)


def class_names_0d(run):
    np.savez(run / "embedding.npz", **{**arrays_of(run), "class_names": np.array("one")})


def ids_too_few(run):
    z = arrays_of(run)
    np.savez(run / "embedding.npz", **{**z, "ids": z["ids"][:5]})


@pytest.mark.parametrize("damage, said", [
    (truncated, r"cannot read as \.npz \(BadZipFile: .*\)"),
    (header_lies, r"array 'embedding' declares shape \(1000000, 2\) \(8,000,000 bytes\) but holds only 64 bytes; "
                  r"the file is truncated or corrupt"),
    (object_ids, r"array 'ids' holds Python objects \(dtype object\), which medcne does not load "
                 r"\(unpickling can run code\)"),
    (corrupt_member, r"(array 'embedding' has no readable \.npy header|cannot read array 'embedding') \(.*\); "
                     r"the file is corrupt.*"),
    (no_embedding, r"damaged \(it has no array 'embedding'\)"),
    (class_names_0d, r"damaged \(class_names has shape \(\), not one name per class\)"),
    (ids_too_few, r"damaged \(ids has shape \(5,\) and type <U\d+, not one id per point \(20\)\)"),
], ids=lambda v: getattr(v, "__name__", ""))
def test_a_damaged_embedding_npz_is_one_line_with_the_runs_remedy(tmp_path, damage, said):
    run = make_run(tmp_path / "run", n=20)
    damage(run)
    with pytest.raises(MedcneError) as caught:
        read_run(run)
    message = str(caught.value)
    prefix = f"{run / 'embedding.npz'}: "
    assert message.startswith(prefix), message
    assert message.endswith(f"; {REMEDY}") and REMEDY == "make the run again", message
    assert re.fullmatch(said, message[len(prefix): -len(f"; {REMEDY}")]), message
    assert not any(advice in message for advice in USER_ADVICE), message
    assert "\n" not in message


def test_the_command_line_says_it_in_one_line_with_exit_2(tmp_path, capsys):
    run = make_run(tmp_path / "run", n=20)
    header_lies(run)
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].endswith("the file is truncated or corrupt; make the run again"), err
    assert str(run / "embedding.npz") in err[0], err


def test_the_viewers_columns_are_read_in_the_files_order_with_the_runs_remedy(tmp_path):
    run = make_run(tmp_path / "run", n=20)
    z = arrays_of(run)
    np.savez(run / "embedding.npz", **z, prov_slice=np.arange(20), score=np.linspace(0, 1, 20),
             prov_series=np.array(["s"] * 20), other=np.zeros((20, 2)))
    prov, numeric = read_columns(run / "embedding.npz", 20)
    assert list(prov) == ["slice", "series"] and list(numeric) == ["score"]
    assert numeric["score"].dtype == float and prov["series"][0] == "s"
    np.savez(run / "embedding.npz", **z, prov_slice=np.arange(19))
    with pytest.raises(MedcneError, match=r"prov_slice has shape \(19,\), not one value per point \(20\); "
                                          r"make the run again$"):
        read_columns(run / "embedding.npz", 20)
    np.savez(run / "embedding.npz", **z)
    object_ids(run)  # a core array: not read for the columns
    assert read_columns(run / "embedding.npz", 20) == ({}, {})
    np.savez(run / "embedding.npz", **z)
    header_lies(run)  # the same
    assert read_columns(run / "embedding.npz", 20) == ({}, {})
    members = {k: npy_bytes(v) for k, v in z.items()}
    members["prov_slice"] = b"not an array"
    write_members(run / "embedding.npz", members)
    with pytest.raises(DataError, match=r"array 'prov_slice' has no readable \.npy header .*; "
                                        r"the file is corrupt or not written by numpy; make the run again$"):
        read_columns(run / "embedding.npz", 20)


def test_without_a_remedy_a_users_file_keeps_its_own_advice(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, images=np.array([{"a": 1}], dtype=object))
    with NpzArrays(path) as npz, pytest.raises(DataError) as caught:
        npz.load("images")
    assert str(caught.value).endswith("(unpickling can run code); store numbers, and text as fixed-width strings "
                                      "(np.str_)")
    with NpzArrays(path, remedy="make it again") as npz, pytest.raises(DataError) as caught:
        npz.load("images")
    assert str(caught.value) == (f"{path}: array 'images' holds Python objects (dtype object), which medcne does "
                                 "not load (unpickling can run code); make it again")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_a_file_that_cannot_be_opened_keeps_the_advice_to_check_its_permissions(tmp_path):
    run = make_run(tmp_path / "run", n=20)
    (run / "embedding.npz").chmod(0)
    try:
        with pytest.raises(DataError, match=r"embedding\.npz: cannot read \(Permission denied\); "
                                            r"check the path and its permissions$"):
            read_run(run)
    finally:
        (run / "embedding.npz").chmod(0o644)
