"""Slides read with OpenSlide: level choice, tiles at one scale from 20x and 40x scans, tissue detection.

The slides are pyramidal TIFFs written here with tifffile (tests/slidehelpers.py),
one of them a mosaic of real BloodMNIST images on white, so the tiles kept and
their pixels are known exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openslide")
pytest.importorskip("tifffile")

from medcne.datasets.slides import (  # noqa: E402
    SlideError,
    SlideGeometry,
    choose_scale,
    geometry_of,
    open_slide,
    tile_grid,
)
from medcne.datasets.slides_plan import TileOptions, iter_blocks, plan_path  # noqa: E402
from medcne.datasets.slides_tissue import close_holes, otsu_threshold, tissue_mask, tissue_share  # noqa: E402
from medcne.errors import MedcneError  # noqa: E402
from slidehelpers import lowres_damaged, mosaic, tissue_blob, write_slide  # noqa: E402

GEOMETRY_40X = SlideGeometry(dimensions=((4000, 3000), (1000, 750), (250, 187)), downsamples=(1.0, 4.0, 16.0),
                             mpp=0.25, objective=40.0)


def test_the_level_read_is_the_coarsest_not_coarser_than_asked():
    assert choose_scale(GEOMETRY_40X, mpp=0.25).level == 0
    s = choose_scale(GEOMETRY_40X, mpp=0.5)
    assert (s.level, s.level_factor, s.downsample) == (0, 2.0, 2.0)
    s = choose_scale(GEOMETRY_40X, mpp=1.0)
    assert (s.level, s.level_factor) == (1, 1.0)
    s = choose_scale(GEOMETRY_40X, mpp=2.0)
    assert (s.level, s.level_factor, s.mpp) == (1, 2.0, 2.0)
    s = choose_scale(GEOMETRY_40X, magnification=10)
    assert (s.level, s.level_factor, s.mpp) == (1, 1.0, 1.0)


def test_magnification_without_objective_power_uses_ten_microns_at_1x():
    geometry = SlideGeometry(GEOMETRY_40X.dimensions, GEOMETRY_40X.downsamples, mpp=0.25, objective=None)
    assert choose_scale(geometry, magnification=20).mpp == pytest.approx(0.5)


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(mpp=0.1), "finer than the slide"),
    (dict(mpp=None, magnification=None), "exactly one of"),
])
def test_impossible_resolutions_are_refused_in_one_line(kwargs, fragment):
    with pytest.raises(MedcneError, match=fragment):
        choose_scale(GEOMETRY_40X, **kwargs)


def test_a_slide_without_resolution_is_one_line(tmp_path):
    path = write_slide(tmp_path / "nores.tiff", tissue_blob(), mpp=None)
    geometry = geometry_of(open_slide(path))
    assert geometry.mpp is None
    with pytest.raises(SlideError, match="states no resolution") as err:
        choose_scale(geometry, mpp=1.0, where=str(path))
    assert "\n" not in str(err.value) and "nores.tiff" in str(err.value)
    with pytest.raises(SlideError, match="neither its objective power"):
        choose_scale(geometry, magnification=10, where=str(path))


def test_the_grid_holds_whole_tiles_only():
    x, y, side = tile_grid(GEOMETRY_40X, choose_scale(GEOMETRY_40X, mpp=1.0), 96)
    assert side == 384
    assert x.max() + side <= 4000 and y.max() + side <= 3000
    assert len(x) == (4000 // 384) * (3000 // 384)


def test_otsu_splits_two_populations_and_closing_fills_small_holes():
    values = np.r_[np.full(500, 10), np.full(500, 120)].astype(np.uint8)
    assert 10 <= otsu_threshold(values) < 120
    mask = np.ones((20, 20), bool)
    mask[8:10, 8:10] = False
    mask[0, 0] = False  # a corner, not a hole: the border is not eaten either
    closed = close_holes(mask, radius=2)
    assert closed[8:10, 8:10].all() and closed[5:15, 5:15].all()
    assert not close_holes(np.zeros((9, 9), bool)).any()


def test_tissue_share_counts_the_mask_under_each_tile():
    mask = np.zeros((8, 8), bool)
    mask[:4, :4] = True
    share = tissue_share(mask, 2.0, np.array([0, 8, 4]), np.array([0, 0, 0]), side=8.0)
    assert share.tolist() == [1.0, 0.0, 0.5]


def test_a_white_slide_has_no_tissue():
    white = np.full((64, 64, 3), 250, np.uint8)
    white[::7, ::5] = 240  # grey noise, no colour
    assert not tissue_mask(white).any()


@pytest.mark.parametrize("n", [20, 48])  # a third and three quarters of the slide covered
def test_mosaic_tiles_are_exactly_the_placed_blood_cells(tmp_path, n):
    level0, where, images, _ = mosaic(n=n)
    path = write_slide(tmp_path / "mosaic.tiff", level0, mpp=0.25)
    plan = plan_path(path, "mosaic", TileOptions(tile_size=28, mpp=1.0, min_tissue=0.5))
    assert plan.scale.level == 2 and plan.scale.level_factor == 1.0 and plan.side == 112
    cells = sorted(zip((plan.y // 112).tolist(), (plan.x // 112).tolist(), strict=True))
    assert cells == sorted(map(tuple, where.tolist()))
    tiles = np.concatenate(list(iter_blocks(plan, 28, block=7)))
    order = {tuple(rc): i for i, rc in enumerate(where.tolist())}
    for tile, x, y in zip(tiles, plan.x, plan.y, strict=True):
        np.testing.assert_array_equal(tile, images[order[(int(y) // 112, int(x) // 112)]])
    prov = plan.provenance
    assert set(prov) == {"slide", "level", "x", "y", "mpp", "tile_size"}
    assert prov["mpp"][0] == 1.0 and prov["tile_size"][0] == 112 and prov["slide"][0] == "mosaic"


def test_20x_and_40x_scans_give_the_same_tiles(tmp_path):
    level0, _, _, _ = mosaic(cells=6, n=10)
    at40 = write_slide(tmp_path / "at40.tiff", level0, mpp=0.25)
    half = level0.reshape(level0.shape[0] // 2, 2, level0.shape[1] // 2, 2, 3)[:, 0, :, 0]
    at20 = write_slide(tmp_path / "at20.tiff", half, mpp=0.5)
    for mpp in (1.0, 2.0):  # 2.0: the 40x slide's level is resized down by 2, the 20x one's read as it is
        options = TileOptions(tile_size=28, mpp=mpp, min_tissue=0.2)  # a quarter: one cell of four
        a, b = plan_path(at40, "a", options), plan_path(at20, "b", options)
        assert a.scale.mpp == b.scale.mpp == mpp and len(a) > 0
        np.testing.assert_array_equal(a.x, 2 * b.x)
        np.testing.assert_array_equal(a.y, 2 * b.y)
        ta, tb = (np.concatenate(list(iter_blocks(p, 28))).astype(int) for p in (a, b))
        # Exact at 1.0; at 2.0 the two ways of averaging round apart by at most one grey level.
        assert np.abs(ta - tb).max() <= (0 if mpp == 1.0 else 1)
    assert (a.scale.level_factor, b.scale.level_factor) == (2.0, 1.0)
    a, b = (plan_path(p, "s", TileOptions(tile_size=28, mpp=0.8)) for p in (at40, at20))
    assert (a.scale.level, b.scale.level) == (1, 0) and a.scale.level_factor == pytest.approx(1.6)
    assert next(iter_blocks(a, 28)).shape[1:] == (28, 28, 3)


def test_a_truncated_slide_is_one_line(tmp_path):
    path = write_slide(tmp_path / "cut.tiff", tissue_blob(), mpp=0.25)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(SlideError, match="cut.tiff") as err:
        plan = plan_path(path, "cut", TileOptions(tile_size=32, mpp=0.5))
        list(iter_blocks(plan, 32))
    assert "\n" not in str(err.value)


def test_a_damaged_low_resolution_level_is_a_slide_error_naming_the_slide(tmp_path):
    path = lowres_damaged(tmp_path / "low.tiff")
    with pytest.raises(SlideError, match=r"low\.tiff: the low-resolution image for tissue detection \(level 1\)"):
        plan_path(path, "low", TileOptions(tile_size=28, mpp=0.25))


def test_any_other_openslide_error_of_a_slide_is_one_line_naming_it(tmp_path, monkeypatch):
    import openslide

    from medcne.datasets import slides_plan

    class Unreadable:
        @property
        def properties(self):
            raise openslide.OpenSlideError("TIFFReadDirectory: bad directory")

    with pytest.raises(SlideError, match=r"^p\.svs: its properties and level sizes cannot be read \(TIFFRead"):
        geometry_of(Unreadable(), "p.svs")

    def broken(*args):
        raise openslide.OpenSlideError("cannot read the label image")

    path = write_slide(tmp_path / "s.tiff", tissue_blob(), mpp=0.25)
    monkeypatch.setattr(slides_plan, "plan_slide", broken)  # a read no function names: still the slide's error
    with pytest.raises(SlideError, match=r"s\.tiff: the slide cannot be read \(cannot read the label image\); "
                                         "the file may be truncated or damaged"):
        plan_path(path, "s", TileOptions(tile_size=28, mpp=0.25))


def test_a_file_that_is_no_slide_is_one_line(tmp_path):
    bogus = tmp_path / "notes.svs"
    bogus.write_text("not a slide")
    with pytest.raises(SlideError, match="cannot be read as a whole-slide image"):
        open_slide(bogus)
    with pytest.raises(SlideError, match="no such slide"):
        open_slide(Path(tmp_path / "missing.svs"))


def test_transparent_parts_outside_the_scan_become_white():
    from PIL import Image

    from medcne.datasets.slides import to_rgb

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)
    rgba[0, 1] = (100, 100, 100, 128)
    out = to_rgb(Image.fromarray(rgba, "RGBA"))
    assert out[0, 0].tolist() == [10, 20, 30] and out[1, 1].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [177, 177, 177]  # half transparent: blended with white
    assert to_rgb(Image.fromarray(np.full((2, 2, 4), 7, np.uint8), "RGBA")).shape == (2, 2, 3)


def test_the_low_resolution_pass_never_exceeds_its_size(tmp_path):
    from medcne.datasets.slides_tissue import MAX_LOWRES_SIDE, lowres_downsample, read_lowres

    huge = SlideGeometry(((200_000, 100_000),), (1.0,), mpp=0.25, objective=None)
    assert 200_000 / lowres_downsample(huge, tile_side=64) <= MAX_LOWRES_SIDE
    path = write_slide(tmp_path / "flat.tiff", tissue_blob(size=512), levels=1)  # no pyramid: block means
    slide = open_slide(path)
    image, ds = read_lowres(slide, geometry_of(slide), 2.5)
    assert ds == 3 and image.shape == (170, 170, 3)
    assert image[60, 60].tolist() == [200, 80, 150] and image[0, 0].tolist() == [255, 255, 255]


def test_tiles_read_as_one_row_equal_tiles_read_one_by_one(tmp_path):
    from medcne.datasets.slides import read_row, read_tile
    from medcne.datasets.slides_plan import rows_of

    level0, _, _, _ = mosaic(n=40)
    path = write_slide(tmp_path / "m.tiff", level0)
    plan = plan_path(path, "m", TileOptions(tile_size=28, mpp=1.0))
    runs = rows_of(plan, 0, len(plan))
    assert max(n for _, n in runs) > 1 and sum(n for _, n in runs) == len(plan)
    slide = open_slide(path)
    first, count = max(runs, key=lambda r: r[1])
    row = read_row(slide, int(plan.x[first]), int(plan.y[first]), count, plan.scale, 28)
    for k in range(count):
        one = read_tile(slide, int(plan.x[first + k]), int(plan.y[first + k]), plan.scale, 28)
        np.testing.assert_array_equal(row[k], one)
    resized = plan_path(path, "m", TileOptions(tile_size=28, mpp=0.8))  # resized tiles: one by one
    assert all(n == 1 for _, n in rows_of(resized, 0, len(resized)))


def test_a_long_decoder_message_is_cut_at_a_word_with_an_ellipsis():
    import openslide

    from medcne.datasets.slides import read_tile

    words = "TIFFRGBAImageGet failed, last error: ZIPDecode: Decoding error at scanline 128, " * 4

    class Broken:
        def read_region(self, *args):
            raise openslide.OpenSlideError(words + "invalid code lengths set")

    scale = choose_scale(GEOMETRY_40X, mpp=1.0)
    with pytest.raises(SlideError) as err:
        read_tile(Broken(), 0, 0, scale, 32, where="s.svs")
    reason = str(err.value).split(" cannot be read (", 1)[1].split("); the file", 1)[0]
    assert reason.endswith("...") and len(reason) <= 240
    kept = reason[:-3]
    assert words.startswith(kept) and words[len(kept)] in " ,;:"  # cut between words, not inside one
