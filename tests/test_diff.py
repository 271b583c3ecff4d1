"""Where two near-duplicates differ: boxes around edits (watermark, logo, removed object), none for edits
that touch the whole picture (re-encoding, resizing, brightness, grayscale), in the keeper's coordinates
whatever the turn, mirror or crop between them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from dedupe.decode import decode_color as load_color
from dedupe.diff import align, difference, render_diff
from dedupe.features.hashes import orient
from images import (
    border,
    brighten,
    contrast,
    encode,
    grayscale,
    logo,
    photo,
    recompress,
    resize,
    save,
    store_oriented,
    watermark,
)

SLACK = 3
"""Pixels a box may fall short of the edit's bounding box (its faintest anti-aliased edge)."""
MARGIN = 12
"""Pixels a box may reach beyond the edit's bounding box (SSIM's window, the morphological close)."""


def rgb(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB"))


def changed(a: Image.Image, b: Image.Image) -> tuple[int, int, int, int]:
    """Bounding box (x1, y1 exclusive) of the pixels that an edit changed."""
    ys, xs = np.nonzero(np.abs(rgb(a).astype(int) - rgb(b).astype(int)).max(axis=2) > 8)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def assert_one_box_around(boxes, edit) -> None:
    """Exactly one box, containing the edit's bounding box and not much more."""
    assert len(boxes) == 1, boxes
    x0, y0, x1, y1 = boxes[0]
    e0, f0, e1, f1 = edit
    assert x0 <= e0 + SLACK and y0 <= f0 + SLACK and x1 >= e1 - SLACK and y1 >= f1 - SLACK, (boxes, edit)
    assert x0 >= e0 - MARGIN and y0 >= f0 - MARGIN and x1 <= e1 + MARGIN and y1 <= f1 + MARGIN, (boxes, edit)


def logo_top_right(im: Image.Image) -> Image.Image:
    return ImageOps.mirror(logo(ImageOps.mirror(im)))  # the logo is symmetric: only its place changes


@pytest.fixture(scope="module")
def pic() -> Image.Image:
    return photo(3, (480, 360))


@pytest.fixture(scope="module")
def marked(pic) -> Image.Image:
    return watermark(pic)


def test_watermark_is_boxed(pic, marked):
    diff = difference(rgb(pic), rgb(marked), {})
    assert diff.keeper.shape == diff.member.shape == (360, 480, 3)
    assert_one_box_around(diff.boxes, changed(pic, marked))


def test_logo_is_boxed(pic):
    member = logo_top_right(pic)
    edit = changed(pic, member)
    assert edit[0] > 400 and edit[1] < 20  # top right
    assert_one_box_around(difference(rgb(pic), rgb(member), {}).boxes, edit)


def test_removed_object_is_boxed():
    base = photo(5, (480, 360))
    keeper = base.copy()
    ImageDraw.Draw(keeper).ellipse([215, 120, 265, 160], fill=(40, 30, 20), outline=(250, 240, 200), width=3)
    member = keeper.copy()
    member.paste(keeper.crop((10, 10, 80, 60)), (205, 115))  # a patch of background pasted over it
    boxes = difference(rgb(keeper), rgb(member), {}).boxes
    assert len(boxes) == 1, boxes
    x0, y0, x1, y1 = boxes[0]
    e0, f0, e1, f1 = changed(base, keeper)  # the object is inside the box
    assert x0 <= e0 and y0 <= f0 and x1 >= e1 and y1 >= f1, boxes
    # the box is the pasted patch (it hides more than the object), give or take SSIM's window
    assert x0 >= 205 - SLACK * 2 and y0 >= 115 - SLACK * 2 and x1 <= 275 + SLACK * 2 and y1 <= 165 + SLACK * 2


def test_solid_logo_on_a_flat_area_is_boxed(pic):
    keeper = pic.copy()
    ImageDraw.Draw(keeper).rectangle([340, 20, 470, 120], fill=(90, 140, 200))  # flat sky
    member = keeper.copy()
    ImageDraw.Draw(member).rectangle([370, 40, 430, 100], fill=(160, 180, 210))
    assert_one_box_around(difference(rgb(keeper), rgb(member), {}).boxes, changed(keeper, member))


def test_recoloured_object_of_equal_luminance_is_boxed(pic):
    """SSIM on luminance cannot see a red object turned green at the same brightness: the tone
    difference of the colours does."""
    keeper, member = pic.copy(), pic.copy()
    ImageDraw.Draw(keeper).ellipse([300, 40, 400, 120], fill=(200, 60, 60))  # luminance 102
    ImageDraw.Draw(member).ellipse([300, 40, 400, 120], fill=(66, 125, 70))  # luminance 101
    diff = difference(rgb(keeper), rgb(member), {})
    assert diff.ssim_diff[40:120, 300:400].max() < 0.1
    assert_one_box_around(diff.boxes, changed(keeper, member))


@pytest.mark.parametrize(
    "edit",
    [
        lambda im: recompress(im, 40),
        lambda im: resize(im, 0.5),
        lambda im: brighten(im, 1.25),
        lambda im: contrast(im, 1.35),
        grayscale,
        lambda im: recompress(resize(brighten(im, 0.8), 0.5), 50),
    ],
    ids=["jpeg-q40", "resized-50%", "brightened", "contrast", "grayscale", "darker-smaller-q50"],
)
def test_whole_picture_edits_give_no_box(pic, edit):
    diff = difference(rgb(pic), rgb(edit(pic)), {})
    assert diff.boxes == []
    assert diff.valid.mean() > 0.9  # all but a thin rim


def test_turned_member_boxes_in_keeper_coordinates(pic, marked):
    member = orient(rgb(marked), 1, False)  # a clockwise quarter turn: the keeper turned becomes the member
    assert member.shape == (480, 360, 3)
    diff = difference(rgb(pic), member, {"rotated": 90})
    assert_one_box_around(diff.boxes, changed(pic, marked))


def test_mirrored_member_boxes_in_keeper_coordinates(pic, marked):
    diff = difference(rgb(pic), rgb(ImageOps.mirror(marked)), {"mirrored": True})
    assert_one_box_around(diff.boxes, changed(pic, marked))


def test_cropped_member_is_compared_over_its_region(pic):
    crop_box = (100, 60, 420, 300)
    member = logo(pic.crop(crop_box))  # the logo in the crop's top left
    logo_in_keeper = np.add(changed(pic.crop(crop_box), member), crop_box[:2] * 2)
    member = resize(member, 0.75)  # and saved smaller
    diff = difference(rgb(pic), rgb(member), {"crop": {"of": "member", "box": list(crop_box)}})
    assert diff.region == crop_box
    assert diff.keeper.shape[:2] == diff.member.shape[:2] == member.size[::-1]  # at the smaller resolution
    boxes = diff.keeper_boxes()
    assert_one_box_around(boxes, logo_in_keeper)
    x0, y0, x1, y1 = boxes[0]
    assert x0 >= crop_box[0] and y0 >= crop_box[1] and x1 <= crop_box[2] and y1 <= crop_box[3]


def test_keeper_cropped_from_a_turned_member_decoded_small(tmp_path):
    """The keeper is a crop of the member, which is turned and decoded at half size: the crop box is in
    the full-size member's pixels (as the report gives it) and is scaled by `member_size`."""
    whole = photo(8, (640, 480))
    crop_box = (120, 80, 600, 440)
    keeper = whole.crop(crop_box)
    keeper.paste((0, 0, 0), (20, 20, 60, 60))  # an edit of the keeper's own
    turned = whole.transpose(Image.Transpose.ROTATE_270)  # a clockwise quarter turn: 480 x 640
    member = load_color(str(save(turned, tmp_path / "member.jpg")), 320)
    assert member.shape == (320, 240, 3)
    x0, y0, x1, y1 = crop_box  # a clockwise quarter turn sends (x, y) to (480 - y, x)
    transform = {"rotated": 90, "crop": {"of": "keeper", "box": [480 - y1, x0, 480 - y0, x1]}}
    diff = difference(rgb(keeper), member, transform, member_size=turned.size)
    assert diff.region == (0, 0, 480, 360) and diff.keeper.shape == (180, 240, 3)
    assert_one_box_around(diff.keeper_boxes(), (20, 20, 60, 60))


def test_framed_member(pic, marked):
    member = border(marked, 0.04, (255, 255, 255))
    diff = difference(rgb(pic), rgb(member), {"frame removed": "second"})
    assert_one_box_around(diff.boxes, changed(pic, marked))


def test_align_gives_equal_shapes_and_full_cover(pic):
    keeper, member, valid = align(rgb(pic), rgb(resize(pic, 0.5)), {})
    assert keeper.shape == member.shape == (180, 240, 3) and valid.shape == (180, 240)
    assert keeper.dtype == member.dtype == np.uint8
    assert valid[4:-4, 4:-4].all() and not valid[:3].any()  # all but a thin rim


def test_load_color_is_upright_rgb_and_small(tmp_path):
    big = photo(4, (400, 300)).resize((1600, 1200), Image.Resampling.BICUBIC)
    path = tmp_path / "turned.jpg"
    path.write_bytes(store_oriented(big, 6, quality=90))
    img = load_color(str(path), 400)
    assert img.dtype == np.uint8 and img.shape == (300, 400, 3)
    expected = rgb(resize(big, 0.25))
    assert np.abs(img.astype(int) - expected).mean() < 6


def test_load_color_flattens_alpha_on_white(tmp_path):
    im = Image.new("RGBA", (64, 48), (255, 0, 0, 0))
    im.paste((0, 0, 255, 255), (0, 0, 32, 48))
    path = tmp_path / "alpha.png"
    path.write_bytes(encode(im, "PNG"))
    img = load_color(str(path), 100)
    assert img.shape == (48, 64, 3)
    assert tuple(img[10, 10]) == (0, 0, 255) and tuple(img[10, 50]) == (255, 255, 255)


def test_render_diff_is_a_small_png(pic, marked):
    diff = difference(rgb(pic), rgb(marked), {})
    png = render_diff(diff)
    shown = Image.open(io.BytesIO(png))
    shown.load()
    assert shown.format == "PNG" and shown.width <= 720 and shown.height <= 300
    pixels = np.asarray(shown.convert("RGB")).astype(int)
    red = (pixels[:, :, 0] > 200) & (pixels[:, :, 1] < 60) & (pixels[:, :, 2] < 60)
    assert red.sum() > 50  # the boxes are drawn
    assert len(png) < 150_000
    small = Image.open(io.BytesIO(render_diff(diff, width=300, height=100)))
    assert small.width <= 300 and small.height <= 100
