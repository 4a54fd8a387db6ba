"""Image decoding: every kind of bad input is refused with the right error, every mode becomes RGB."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from labelserve.preprocess import PreprocessSpec, dct_scale_factor
from service.errors import ImageTooLargeError, InvalidImageError, UnsupportedImageError
from service.pipeline.decode import DecodeLimits, decode_image

LIMITS = DecodeLimits(max_image_bytes=5_000_000, max_image_pixels=40_000_000)


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _noise_jpeg(size: tuple[int, int] = (96, 64)) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return _encode(Image.fromarray(pixels), "JPEG", quality=90)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a size in its IHDR chunk but carries no pixel data at all."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_jpeg_decodes_to_rgb_of_the_same_size() -> None:
    image = decode_image(_noise_jpeg((96, 64)), "a.jpg", LIMITS)
    assert image.mode == "RGB"
    assert image.size == (96, 64)


def test_empty_upload_is_invalid() -> None:
    with pytest.raises(InvalidImageError, match="empty"):
        decode_image(b"", "empty.jpg", LIMITS)


def test_too_many_bytes_is_refused_before_decoding() -> None:
    data = _noise_jpeg()
    with pytest.raises(ImageTooLargeError, match="MAX_IMAGE_BYTES"):
        decode_image(data, "big.jpg", DecodeLimits(max_image_bytes=len(data) - 1, max_image_pixels=10**9))


def test_truncated_jpeg_is_invalid() -> None:
    data = _noise_jpeg((256, 256))
    with pytest.raises(InvalidImageError, match=r"truncated|corrupt"):
        decode_image(data[: len(data) // 2], "cut.jpg", LIMITS)


def test_corrupt_header_is_invalid() -> None:
    data = _noise_jpeg()
    with pytest.raises(InvalidImageError):
        decode_image(data[:200], "header.jpg", LIMITS)


def test_text_is_not_an_image() -> None:
    with pytest.raises(UnsupportedImageError, match="not an image"):
        decode_image(b"hello, this is a text file\n" * 10, "notes.jpg", LIMITS)


def test_formats_outside_the_allow_list_are_refused() -> None:
    ppm = _encode(Image.new("RGB", (8, 8), (1, 2, 3)), "PPM")
    with pytest.raises(UnsupportedImageError):
        decode_image(ppm, "image.ppm", LIMITS)


def test_pixel_count_is_checked_from_the_header_before_any_pixel_is_read() -> None:
    # 8000 x 8000 is under Pillow's own bomb limit, and the file has no pixel data: only a header check can
    # answer "too large" here; decoding would have said "truncated".
    data = _png_header_only(8000, 8000)
    with pytest.raises(ImageTooLargeError, match="64000000 pixels"):
        decode_image(data, "huge.png", LIMITS)


def test_decompression_bomb_is_too_large_not_a_crash() -> None:
    data = _png_header_only(100_000, 100_000)  # far beyond Pillow's own limit, which raises while opening
    with pytest.raises(ImageTooLargeError):
        decode_image(data, "bomb.png", DecodeLimits(max_image_bytes=10**6, max_image_pixels=10**12))


def test_exif_orientation_is_applied() -> None:
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)  # left half red
    pixels[:, 20:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    data = _encode(Image.fromarray(pixels), "JPEG", quality=95, exif=exif.tobytes())

    image = decode_image(data, "phone.jpg", LIMITS)

    assert image.size == (20, 40)
    top, bottom = np.asarray(image)[5, 10], np.asarray(image)[35, 10]
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


@pytest.mark.parametrize(("mode", "fmt", "color"), [
    ("CMYK", "JPEG", (0, 255, 255, 0)),
    ("LA", "PNG", (128, 200)),
    ("RGBA", "PNG", (10, 20, 30, 0)),
    ("L", "PNG", 77),
    ("1", "PNG", 1),
])
def test_modes_convert_to_rgb(mode: str, fmt: str, color: object) -> None:
    data = _encode(Image.new(mode, (16, 12), color), fmt)  # type: ignore[arg-type]
    image = decode_image(data, f"x.{fmt.lower()}", LIMITS)
    assert image.mode == "RGB"
    assert image.size == (16, 12)


def test_cmyk_red_stays_red() -> None:
    data = _encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95)
    red, green, blue = np.asarray(decode_image(data, "cmyk.jpg", LIMITS))[4, 4]
    assert red > 200 and green < 60 and blue < 60


def test_palette_image_converts_through_its_palette() -> None:
    palette_image = Image.new("RGB", (8, 8), (0, 128, 255)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    image = decode_image(_encode(palette_image, "PNG"), "p.png", LIMITS)
    np.testing.assert_allclose(np.asarray(image)[0, 0], (0, 128, 255), atol=2)


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257 * 100, 32768, 65535]], dtype=np.uint16)
    image = decode_image(_encode(Image.fromarray(values), "PNG"), "depth.png", LIMITS)
    assert np.asarray(image)[0, :, 0].tolist() == [0, 100, 128, 255]


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (10, 10), (255, 0, 0)), Image.new("RGB", (10, 10), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    red, _, blue = np.asarray(decode_image(buffer.getvalue(), "anim.gif", LIMITS))[5, 5]
    assert red > 200 and blue < 60


def test_the_fast_jpeg_path_gives_pillows_pixels_and_pillows_errors(photo_jpegs: list[tuple[str, bytes]],
                                                                    val_jpegs: list[tuple[str, bytes]]) -> None:
    pytest.importorskip("simplejpeg", reason="simplejpeg (the serve extra) is not installed")
    grey = io.BytesIO()
    Image.open(io.BytesIO(photo_jpegs[0][1])).convert("L").save(grey, format="JPEG")
    limits = DecodeLimits(max_image_bytes=10_000_000, max_image_pixels=10_000_000)
    for name, data in [*photo_jpegs, *val_jpegs[:4], ("grey.jpg", grey.getvalue())]:
        fast = decode_image(data, name, limits, fast_jpeg=True)
        assert np.array_equal(np.asarray(fast), np.asarray(decode_image(data, name, limits, fast_jpeg=False))), name
    truncated = photo_jpegs[0][1][: len(photo_jpegs[0][1]) // 2]
    for fast_jpeg in (True, False):
        with pytest.raises(InvalidImageError, match="truncated"):
            decode_image(truncated, "half.jpg", limits, fast_jpeg=fast_jpeg)


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("size", [(64, 64), (65, 63), (129, 130), (255, 257), (300, 97), (513, 129)])
def test_simplejpeg_at_a_dct_scale_equals_pillows_draft(size: tuple[int, int], mode: str) -> None:
    spec = PreprocessSpec(height=32, width=32, jpeg_dct_scaling=True)
    pixels = np.random.default_rng(size[0]).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    data = _encode(Image.fromarray(pixels).convert(mode), "JPEG", quality=85)
    factor = dct_scale_factor(*size, spec)
    fast = decode_image(data, "x.jpg", LIMITS, fast_jpeg=True, spec=spec)
    pillow = decode_image(data, "x.jpg", LIMITS, fast_jpeg=False, spec=spec)
    assert fast.size == pillow.size == (-(-size[0] // factor), -(-size[1] // factor))
    assert np.array_equal(np.asarray(fast), np.asarray(pillow))


def test_dct_scaling_leaves_other_formats_at_full_size() -> None:
    spec = PreprocessSpec(height=32, width=32, jpeg_dct_scaling=True)
    png = _encode(Image.new("RGB", (256, 256), (1, 2, 3)), "PNG")
    assert decode_image(png, "x.png", LIMITS, spec=spec).size == (256, 256)
