"""`medcne plot` refuses a --values it would ignore or cannot read, before it writes anything.

--values is the table --color-by reads, on the map: before, a --values given
without --color-by (even one that did not exist) was ignored and the plain map
written, and so was --color-by on the thumbnail map.
"""

from __future__ import annotations

import pytest

from evalhelpers import make_run
from medcne.cli import main


@pytest.fixture
def run(tmp_path):
    return make_run(tmp_path / "run", n=60)


@pytest.mark.parametrize("options, said", [
    (["--values", "/no/such.csv"], "--values /no/such.csv is read only with --color-by COLUMN"),
    (["--values", "{meta}"], "is read only with --color-by COLUMN"),
    (["--values", "/no/such.csv", "--color-by", "site"], "--values /no/such.csv: no such file"),
    (["--kind", "thumbnails", "--color-by", "label"], "--color-by colours --kind map only"),
])
def test_values_that_would_be_ignored_or_are_missing_are_refused(tmp_path, capsys, run, options, said):
    meta = tmp_path / "meta.csv"
    meta.write_text("id,site\n")
    out = tmp_path / "p.png"
    options = [o.format(meta=meta) for o in options]
    assert main(["plot", str(run), "--out", str(out), *options]) == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.csv", "run"]  # nothing written


def test_values_with_color_by_still_colour_the_map(tmp_path, run):
    from medcne.runs import read_run

    ids = read_run(run).ids
    (tmp_path / "meta.csv").write_text("id,site\n" + "".join(f"{i},{'AB'[n % 2]}\n" for n, i in enumerate(ids)))
    assert main(["plot", str(run), "--values", str(tmp_path / "meta.csv"), "--color-by", "site",
                 "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_values_for_part_of_the_images_are_said_and_an_id_with_two_values_is_refused(tmp_path, run, capsys):
    """A user probe: values for half the images drew half the map without a word; a repeated id's last
    value won silently."""
    from medcne.runs import read_run

    ids = [str(i) for i in read_run(run).ids]
    half = tmp_path / "half.csv"
    half.write_text("id,x\n" + "".join(f"{i},{n}\n" for n, i in enumerate(ids[:30])) + "ghost1,1\nghost2,2\n")
    assert main(["plot", str(run), "--values", str(half), "--color-by", "x", "--out", str(tmp_path / "p.png")]) == 0
    out = capsys.readouterr().out
    assert "30 of the 60 points have no 'x' value and are not drawn" in out and "2 ids are not images of" in out
    twice = tmp_path / "twice.csv"
    twice.write_text(f"id,x\n{ids[0]},1\n{ids[0]},999\n")
    assert main(["plot", str(run), "--values", str(twice), "--color-by", "x", "--out", str(tmp_path / "q.png")]) == 2
    assert f"id '{ids[0]}' has two values of 'x' ('1' and '999')" in capsys.readouterr().err
