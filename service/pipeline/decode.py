"""Bytes -> RGB Pillow image, refusing what should not be decoded. Blocking: call it from a worker thread.

The checks run cheapest first: byte count, then the format and the pixel count from the header (Pillow's `open`
reads only the header), and only then the pixels. Plain RGB or greyscale JPEGs without an EXIF rotation are decoded
by simplejpeg (libjpeg-turbo's TurboJPEG API) where it is installed: about 1.5x faster than Pillow here, with
bit-identical pixels (same library, same IDCT and upsampling), so there is no skew against training. Conversion
to RGB is `labelserve.image.to_rgb`, the one training uses too (EXIF orientation applied first), so served images
look like evaluated ones; 16-bit images are scaled to 8 bits instead of clipped. Given the model's preprocessing
spec, large JPEGs are decoded at its DCT scale (`labelserve.preprocess.dct_scale_factor`) by either decoder, with
the same pixels as training's `open_rgb`.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from labelserve.image import decode_at_dct_scale, to_rgb
from labelserve.preprocess import PreprocessSpec, dct_scale_factor
from service.errors import ImageTooLargeError, InvalidImageError, UnsupportedImageError

__all__ = ["ACCEPTED_FORMATS", "DecodeLimits", "decode_image", "decode_opened", "is_plain_jpeg", "open_checked"]

# Formats with a plain, well-tested decoder; EPS (Ghostscript) and exotic formats are never opened. Phones' MPO
# files open through the JPEG plugin.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
_CORRUPT = (OSError, SyntaxError, ValueError, EOFError, struct.error)
_EXIF_ORIENTATION = 0x0112

try:
    import simplejpeg
except ImportError:  # optional: Pillow decodes everything on its own
    simplejpeg = None


@dataclass(frozen=True)
class DecodeLimits:
    """What one uploaded image may cost."""

    max_image_bytes: int
    max_image_pixels: int


def _open(data: bytes, filename: str) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{filename}: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedImageError(f"{filename} is not an image in an accepted format "
                                    f"({', '.join(ACCEPTED_FORMATS)})") from exc
    except _CORRUPT as exc:
        raise InvalidImageError(f"{filename} has a corrupt image header: {exc}") from exc


def is_plain_jpeg(image: Image.Image) -> bool:
    """A baseline RGB or greyscale JPEG without an EXIF rotation: what decoders other than Pillow may take."""
    return image.format == "JPEG" and image.mode in ("RGB", "L") and image.getexif().get(_EXIF_ORIENTATION, 1) == 1


def _fast_jpeg(image: Image.Image, data: bytes, filename: str, spec: PreprocessSpec | None) -> Image.Image | None:
    """simplejpeg's decode when it gives exactly Pillow's result; None where Pillow must do it."""
    if simplejpeg is None or not is_plain_jpeg(image):
        return None
    width, height = image.size  # a plain JPEG has no rotation: stored size = displayed size
    factor = dct_scale_factor(width, height, spec) if spec is not None else 1
    # The smallest scale giving at least width/factor x height/factor is exactly 1/factor (libjpeg-turbo's next
    # smaller scales are 3/8 below 1/2 and 1/8 below 1/4), so this is Pillow's draft, pixel for pixel.
    scaled = {} if factor == 1 else {"min_width": -(-width // factor), "min_height": -(-height // factor)}
    try:
        return Image.fromarray(simplejpeg.decode_jpeg(data, colorspace="RGB", **scaled))  # uint8 [H, W, 3] -> RGB
    except ValueError as exc:
        raise InvalidImageError(f"{filename} is corrupt or truncated: {exc}") from exc


def open_checked(data: bytes, filename: str, limits: DecodeLimits) -> Image.Image:
    """Open an upload's header (no pixels read) after the byte checks, and check its format and pixel count.

    Raises:
        InvalidImageError: empty data or a corrupt header (400).
        ImageTooLargeError: too many bytes, or too many pixels according to the header (413).
        UnsupportedImageError: not an image, or a format we do not open (415).
    """
    if not data:
        raise InvalidImageError(f"{filename} is empty")
    if len(data) > limits.max_image_bytes:
        raise ImageTooLargeError(f"{filename} has {len(data)} bytes, over the limit of {limits.max_image_bytes} "
                                 "(LABELSERVE_MAX_IMAGE_BYTES)")
    image = _open(data, filename)
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImageError(f"{filename} declares an empty size {width}x{height}")
    if width * height > limits.max_image_pixels:
        raise ImageTooLargeError(f"{filename} is {width}x{height} = {width * height} pixels, over the limit of "
                                 f"{limits.max_image_pixels} (LABELSERVE_MAX_IMAGE_PIXELS)")
    return image


def decode_image(data: bytes, filename: str, limits: DecodeLimits, fast_jpeg: bool = True,
                 spec: PreprocessSpec | None = None) -> Image.Image:
    """Decode an uploaded image to RGB: first frame, EXIF orientation applied.

    Args:
        data: the uploaded bytes.
        filename: for error messages.
        limits: byte and pixel limits.
        fast_jpeg: decode plain JPEGs with simplejpeg when installed (identical pixels, faster).
        spec: the preprocessing the image is for: a large JPEG is decoded at its DCT scale (None: full size).

    Raises:
        InvalidImageError: empty, corrupt or truncated data (400).
        ImageTooLargeError: too many bytes, or too many pixels according to the header (413).
        UnsupportedImageError: not an image, or a format we do not open (415).
    """
    return decode_opened(open_checked(data, filename, limits), data, filename, fast_jpeg, spec)


def decode_opened(image: Image.Image, data: bytes, filename: str, fast_jpeg: bool = True,
                  spec: PreprocessSpec | None = None) -> Image.Image:
    """The pixels of an image `open_checked` returned (its header already passed the checks), as in `decode_image`.

    Raises:
        InvalidImageError: corrupt or truncated data (400).
        ImageTooLargeError: a decompression bomb Pillow notices while decoding (413).
    """
    if fast_jpeg and (fast := _fast_jpeg(image, data, filename, spec)) is not None:
        return fast
    try:
        image.seek(0)  # first frame of animations and multi-page files
        if spec is not None:
            decode_at_dct_scale(image, spec)
        image.load()
        return to_rgb(ImageOps.exif_transpose(image))
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{filename}: {exc}") from exc
    except _CORRUPT as exc:
        raise InvalidImageError(f"{filename} is corrupt or truncated: {exc}") from exc
