"""maskwatch.decode: Pillow modes to RGB uint8, EXIF orientation, coordinate maps, refused inputs."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from maskwatch.decode import (
    Decoded,
    DecodeError,
    apply_orientation,
    boxes_to_stored,
    boxes_to_upright,
    decode_bytes,
    decode_file,
    list_images,
    to_stored,
    to_upright,
)

ORIENTATIONS = range(1, 9)


def save(img: Image.Image, path: Path, **kwargs) -> Path:
    img.save(path, **kwargs)
    return path


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def exif_with_orientation(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height 8-bit grey pixels but carries almost no data.

    Pillow reads only the header in Image.open, so the size checks run without allocating the image.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )


# --- modes ----------------------------------------------------------------------------------------------------


def test_grayscale_l_becomes_three_equal_channels(tmp_path: Path) -> None:
    gray = np.array([[0, 10, 200], [255, 128, 1]], dtype=np.uint8)
    d = decode_file(save(Image.fromarray(gray, "L"), tmp_path / "g.png"))
    assert d.pixels.shape == (2, 3, 3) and d.pixels.dtype == np.uint8
    assert (d.width, d.height, d.orientation) == (3, 2, 1)
    for c in range(3):
        np.testing.assert_array_equal(d.pixels[:, :, c], gray)


def test_rgba_transparent_pixels_composite_on_white(tmp_path: Path) -> None:
    rgba = np.array(
        [[[255, 0, 0, 255], [255, 0, 0, 0]], [[0, 0, 255, 128], [10, 20, 30, 255]]],
        dtype=np.uint8,
    )
    px = decode_file(save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png")).pixels.astype(int)
    assert px[0, 0].tolist() == [255, 0, 0]  # opaque: colour kept
    assert px[0, 1].tolist() == [255, 255, 255]  # fully transparent red: white, not red or black
    assert px[1, 1].tolist() == [10, 20, 30]
    # Half-transparent blue over white: R, G = 255 * (1 - 128/255) = 127; B = 255.
    np.testing.assert_allclose(px[1, 0], [127, 127, 255], atol=1)


def test_palette_image_uses_its_palette(tmp_path: Path) -> None:
    img = Image.new("P", (3, 1))
    img.putpalette([0, 0, 0, 10, 20, 30, 200, 100, 50] + [0] * (256 * 3 - 9))
    for x, index in enumerate([1, 2, 0]):
        img.putpixel((x, 0), index)
    px = decode_file(save(img, tmp_path / "p.png")).pixels
    assert px.tolist() == [[[10, 20, 30], [200, 100, 50], [0, 0, 0]]]
    # With palette entry 1 marked transparent, that pixel turns white.
    px = decode_file(save(img, tmp_path / "pt.png", transparency=1)).pixels
    assert px.tolist() == [[[255, 255, 255], [200, 100, 50], [0, 0, 0]]]


def test_sixteen_bit_grayscale_is_scaled_to_eight_bits(tmp_path: Path) -> None:
    values = np.array([[0, 256, 32768, 65535]], dtype=np.uint16)
    img = Image.fromarray(values)
    assert img.mode == "I;16"
    px = decode_file(save(img, tmp_path / "16.png")).pixels
    # v / 65535 * 255 rounded: 0 -> 0, 256 -> 0.996 -> 1, 32768 -> 127.502 -> 128, 65535 -> 255.
    assert px[:, :, 0].tolist() == [[0, 1, 128, 255]]
    assert (px[:, :, 0] == px[:, :, 1]).all() and (px[:, :, 0] == px[:, :, 2]).all()


def test_rgb_jpeg(tmp_path: Path) -> None:
    rgb = np.zeros((16, 24, 3), dtype=np.uint8)
    rgb[:, :12] = (200, 30, 40)
    rgb[:, 12:] = (20, 40, 220)
    d = decode_file(save(Image.fromarray(rgb), tmp_path / "c.jpg", quality=95, subsampling=0))
    assert d.pixels.shape == (16, 24, 3) and d.pixels.dtype == np.uint8 and d.orientation == 1
    # Lossy, but 8x8 blocks of flat colour come back within a few levels (R and B not swapped).
    np.testing.assert_allclose(d.pixels[4, 4], (200, 30, 40), atol=6)
    np.testing.assert_allclose(d.pixels[4, 20], (20, 40, 220), atol=6)


def test_committed_examples_decode_at_their_annotated_size(example) -> None:
    d = decode_file(example.path)
    assert (d.width, d.height, d.orientation) == (example.width, example.height, 1)


# --- EXIF orientation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "marked_upright_xy"),
    [
        # Stored 64 wide x 32 high, a red 16x16 block in the stored top-left corner, centre (8, 8).
        (6, (24, 8)),  # rotate 90 cw to view: upright 32x64, (h - y, x) = (32 - 8, 8): top right
        (8, (8, 56)),  # rotate 90 ccw: (y, w - x) = (8, 64 - 8): bottom left
        (3, (56, 24)),  # rotate 180: (w - x, h - y) = (56, 24): bottom right
    ],
)
def test_exif_rotated_jpeg(tmp_path: Path, orientation: int, marked_upright_xy: tuple[int, int]) -> None:
    stored = np.full((32, 64, 3), 255, dtype=np.uint8)
    stored[:16, :16] = (255, 0, 0)
    path = save(
        Image.fromarray(stored),
        tmp_path / "r.jpg",
        quality=95,
        subsampling=0,
        exif=exif_with_orientation(orientation),
    )
    d = decode_file(path)
    assert d.orientation == orientation
    assert d.pixels.shape == (32, 64, 3)  # pixels stay as stored
    upright = d.upright()
    assert upright.shape == ((64, 32, 3) if orientation in (6, 8) else (32, 64, 3))
    x, y = marked_upright_xy
    assert tuple(to_upright(np.array([[8.0, 8.0]]), orientation, 64, 32)[0]) == (x, y)
    np.testing.assert_allclose(upright[y, x], (255, 0, 0), atol=8)
    # The stored top-left corner is not where the block ended up (white there).
    assert upright[2, 2].min() > 240
    # Pillow's own exif_transpose agrees pixel for pixel.
    with Image.open(path) as im:
        np.testing.assert_array_equal(upright, np.asarray(ImageOps.exif_transpose(im).convert("RGB")))


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_apply_orientation_matches_pillow_for_all_eight(orientation: int) -> None:
    stored = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    data = encode(Image.fromarray(stored), "PNG", exif=exif_with_orientation(orientation))
    d = decode_bytes(data)
    assert d.orientation == orientation
    np.testing.assert_array_equal(d.pixels, stored)  # lossless
    with Image.open(io.BytesIO(data)) as im:
        np.testing.assert_array_equal(d.upright(), np.asarray(ImageOps.exif_transpose(im).convert("RGB")))


@pytest.mark.parametrize("orientation", [0, 9, 65535])
def test_out_of_range_orientation_is_treated_as_upright(orientation: int) -> None:
    d = decode_bytes(encode(Image.new("RGB", (4, 2)), "JPEG", exif=exif_with_orientation(orientation)))
    assert d.orientation == 1 and d.upright().shape == (2, 4, 3)


# --- coordinate maps ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "expected"),
    [
        # Stored 40 wide x 30 high, point (10, 5).
        (1, (10, 5)),
        (2, (30, 5)),  # mirrored: (w - x, y)
        (3, (30, 25)),  # 180: (w - x, h - y)
        (4, (10, 25)),  # flipped: (x, h - y)
        (5, (5, 10)),  # transposed: (y, x)
        (6, (25, 10)),  # 90 cw: (h - y, x)
        (7, (25, 30)),  # transverse: (h - y, w - x)
        (8, (5, 30)),  # 90 ccw: (y, w - x)
    ],
)
def test_one_point_per_orientation_by_hand(orientation: int, expected: tuple[int, int]) -> None:
    up = to_upright(np.array([[10.0, 5.0]]), orientation, 40, 30)
    assert tuple(up[0]) == expected
    np.testing.assert_array_equal(to_stored(up, orientation, 40, 30), [[10.0, 5.0]])


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_points_and_boxes_round_trip(orientation: int) -> None:
    w, h = 40, 30
    rng = np.random.default_rng(orientation)
    points = rng.uniform(0, [w, h], size=(20, 2))
    np.testing.assert_allclose(to_stored(to_upright(points, orientation, w, h), orientation, w, h), points)
    x1y1 = rng.uniform(0, [w / 2, h / 2], size=(10, 2))
    boxes = np.concatenate([x1y1, x1y1 + rng.uniform(1, [w / 2, h / 2], size=(10, 2))], axis=1)
    up = boxes_to_upright(boxes, orientation, w, h)
    assert (up[:, 2] >= up[:, 0]).all() and (up[:, 3] >= up[:, 1]).all()  # still x1 <= x2, y1 <= y2
    uw, uh = (h, w) if orientation >= 5 else (w, h)
    assert (up >= 0).all() and (up[:, [0, 2]] <= uw).all() and (up[:, [1, 3]] <= uh).all()
    np.testing.assert_allclose(boxes_to_stored(up, orientation, w, h), boxes)
    assert boxes_to_upright(np.zeros((0, 4)), orientation, w, h).shape == (0, 4)


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_point_map_agrees_with_the_pixel_rotation(orientation: int) -> None:
    """The centre of every stored pixel maps onto the upright pixel that holds the same value."""
    w, h = 7, 5
    stored = np.arange(w * h * 3, dtype=np.uint8).reshape(h, w, 3)
    upright = apply_orientation(stored, orientation)
    ys, xs = np.mgrid[0:h, 0:w]
    centres = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1)
    up = np.floor(to_upright(centres, orientation, w, h)).astype(int)
    np.testing.assert_array_equal(upright[up[:, 1], up[:, 0]], stored[ys.ravel(), xs.ravel()])


def test_box_to_upright_by_hand() -> None:
    # Stored 40x30, box (2, 4, 12, 10), orientation 6 (h - y, x): corners (26, 2) and (20, 12).
    # Sorted per axis: (20, 2, 26, 12).
    up = boxes_to_upright(np.array([[2.0, 4.0, 12.0, 10.0]]), 6, 40, 30)
    np.testing.assert_array_equal(up, [[20.0, 2.0, 26.0, 12.0]])


# --- refused inputs -------------------------------------------------------------------------------------------


def real_jpeg() -> bytes:
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return encode(Image.fromarray(rgb), "JPEG", quality=90)


@pytest.mark.parametrize(
    ("content", "error", "reason"),
    [
        (b"", DecodeError, r"empty file \(0 bytes\)"),
        (real_jpeg()[: len(real_jpeg()) // 2], DecodeError, "cannot decode: image file is truncated"),
        (real_jpeg()[:100], DecodeError, "cannot decode"),  # cut inside the header
        (b"name,score\nalice,3\n", DecodeError, r"not an image \(unknown or corrupt format\)"),
        (b"\x89PNG\r\n\x1a\n", DecodeError, "not an image"),  # a PNG signature and nothing else
    ],
    ids=["zero-bytes", "truncated-jpeg", "jpeg-header-only", "text", "png-signature-only"],
)
def test_broken_files_raise_decode_error_with_a_reason(
    tmp_path: Path, content: bytes, error: type[Exception], reason: str
) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(error, match=reason):
        decode_file(path)
    with pytest.raises(error, match=reason):
        decode_bytes(content)


def test_missing_path_and_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        decode_file(tmp_path / "gone.jpg")
    with pytest.raises(DecodeError, match="is a folder, not an image"):
        decode_file(tmp_path)
    assert issubclass(DecodeError, ValueError)  # callers may catch ValueError


@pytest.mark.parametrize(
    ("max_pixels", "error"),
    [
        (200 * 100 - 1, DecodeError),  # 20000 pixels over a limit of 19999
        (200 * 100, None),  # exactly at the limit passes
    ],
)
def test_max_pixels_limit(max_pixels: int, error: type[Exception] | None) -> None:
    data = encode(Image.new("L", (200, 100)), "PNG")
    if error is None:
        assert decode_bytes(data, max_pixels=max_pixels).pixels.shape == (100, 200, 3)
    else:
        with pytest.raises(error, match=rf"200x100 is over the limit of {max_pixels} pixels"):
            decode_bytes(data, max_pixels=max_pixels)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    # 20000 x 20000 = 400 M pixels from a ~100-byte file: refused from the header, nothing allocated.
    with pytest.raises(DecodeError, match="pixels"):
        decode_bytes(png_header_only(20_000, 20_000))


def test_image_at_max_pixels_is_not_refused_for_its_size() -> None:
    # 10000 x 10000 = 100 M = MAX_PIXELS, not over it. The file holds no pixel data, so the expected
    # outcome is a truncation error, not a size refusal.
    with pytest.raises(DecodeError, match="truncated"):
        decode_bytes(png_header_only(10_000, 10_000))


def test_decoded_properties() -> None:
    d = Decoded(np.zeros((3, 5, 3), dtype=np.uint8), 8)
    assert (d.width, d.height) == (5, 3)
    assert d.upright().shape == (5, 3, 3)


# --- list_images ----------------------------------------------------------------------------------------------


def test_list_images_expands_folders_sorted_and_keeps_files_as_given(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for name in ("z.png", "b.png", "sub/c.png", "a.jpg", ".hidden.jpg"):
        (folder / name).write_bytes(b"x")
    single = tmp_path / "y.jpg"
    single.write_bytes(b"x")
    out, ignored = list_images([single, folder])
    # Sorted by full path: sub/c.png comes before z.png although rglob lists the top folder first.
    assert out == [single, folder / "a.jpg", folder / "b.png", folder / "sub" / "c.png", folder / "z.png"]
    assert ignored == []
    assert list_images([]) == ([], [])
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        list_images([folder, tmp_path / "missing"])


def test_list_images_skips_non_image_files_in_folders(examples_dir: Path) -> None:
    images, ignored = list_images([examples_dir])
    assert [p.name for p in images] == [
        "maksssksksss487.png", "maksssksksss698.png", "maksssksksss787.png", "maksssksksss83.png"]
    assert sorted(p.name for p in ignored) == ["README.md", "examples.json"]
    named = examples_dir / "README.md"
    assert list_images([named]) == ([named], [])  # a file named on its own is always taken
