"""Decoding, validating, converting and resizing one image from its raw bytes.

Shared by the preprocessing job (image folders -> the ``images`` table) and the labelling job
(image files -> classifier input). Everything here is pure Python on bytes and arrays, with no
Spark, so that executors can call it row by row inside a batch.

One file goes through these steps; the first that fails raises ``ImageRejected``:

1. signature: the first bytes must be those of a PNG, JPEG, GIF, BMP, WebP or TIFF file, and
   only that format's decoder is tried, so a hostile file cannot reach any other decoder;
2. header: width x height must be at most ``max_pixels`` and the shorter side at least
   ``min_size``, both read before a single pixel is decoded;
3. pixels: the first frame is decoded (animated GIF, WebP and multi-page TIFF give their
   first frame); a large JPEG is decoded at 1/2, 1/4 or 1/8 scale straight away;
4. orientation: the EXIF orientation tag is applied, so the picture stands as it was shot;
5. colour: every pixel format becomes 8-bit grayscale or RGB (see ``decode_image``);
6. geometry: the centre square is cut out and resized to ``image_size`` x ``image_size``.

Pillow has a decompression bomb limit of its own (``PIL.Image.MAX_IMAGE_PIXELS``). It is
neither changed nor relied on here: ``max_pixels`` decides, Pillow's warning is silenced while
a file is decoded, and its error becomes a ``too_large`` rejection. Pillow refuses files over
twice its limit (about 179 million pixels by default) whatever ``max_pixels`` says, so raising
``max_pixels`` above that has no effect.

Pillow's other warnings about damaged files (a broken EXIF block, say) are silenced as well:
on a folder of millions of files they would flood the executor logs, and the file's rejection
already says what is wrong. Silencing goes through ``warnings.catch_warnings``, which is not
thread-safe: decode from one thread per process, as Spark's Python workers do.
"""

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

REJECT_REASONS = {
    "empty": "the file is empty (zero bytes)",
    "not_an_image": "the file is not a PNG, JPEG, GIF, BMP, WebP or TIFF image",
    "truncated": "the file ends before its image data does",
    "corrupt": "the image data is damaged and cannot be decoded",
    "too_large": "the image has more pixels than allowed (a possible decompression bomb)",
    "too_small": "the shorter side of the image is below the allowed minimum",
    "unsupported_mode": "the pixel format cannot be turned into grayscale or RGB",
    "outside_input": "the file lies outside the input folder: a symbolic link, to it or to a "
                     "folder on its path, leads out of the input",
    "file_too_large": "the file is over the size limit and was not read (preprocess "
                      "--max-file-bytes, 128 MiB by default; Spark reads at most 2 GiB a file)",
    "not_read": "Spark listed the file but did not read it: it never reads names starting with "
                "_metadata or _common_metadata (it takes them for Parquet summaries), and a file "
                "removed after the listing is not there to read; rename or restore it",
}

def _looks_like(data: bytes) -> str:
    """What a non-image file seems to be, without copying its content into the rejects table
    (which more people may read than the input folder)."""
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "it looks like an HTML page, perhaps an error page saved under an image name"
    if head.startswith((b"<?xml", b"<svg")):
        return "it looks like XML or SVG; SVG drawings must be rendered to PNG first"
    try:
        data[:512].decode("utf-8")
        return "it looks like text"
    except UnicodeDecodeError:
        return "it holds binary data of no known image format"


# How each format detect_format recognises is written for people; Pillow's own name for it
# is the key in capitals.
FORMAT_NAMES = {"png": "PNG", "jpeg": "JPEG", "gif": "GIF", "bmp": "BMP", "webp": "WebP",
                "tiff": "TIFF"}

# Sizes of the BMP info headers Pillow reads; they follow the 14-byte file header.
_BMP_INFO_HEADER_SIZES = {12, 40, 52, 56, 64, 108, 124}

# What Pillow's decoders raise on damaged or hostile input. Any of them while reading a file
# means that file is rejected; none of them may end the batch it belongs to.
_DECODER_FAILURES = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError,
                     TypeError, struct.error, ZeroDivisionError, OverflowError)

# A JPEG is decoded at the smallest 1/2, 1/4 or 1/8 scale whose shorter side is still this
# many times the output size, so that the final resize has enough detail to average over.
_DRAFT_MARGIN = 2

# Resizing first shrinks by a whole factor with a box filter while the image is more than
# this many times the target, then finishes with Lanczos: much faster on large images and
# indistinguishable from a pure Lanczos resize at this gap.
_REDUCING_GAP = 3.0

# Pixel formats, grouped by how they become 8-bit grayscale or RGB.
_WITH_ALPHA = {"RGBA", "RGBa", "LA", "PA"}
_HIGH_DEPTH = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
_EIGHT_BIT = {"1": "L", "L": "L", "P": "RGB", "RGB": "RGB", "RGBX": "RGB", "CMYK": "RGB",
              "YCbCr": "RGB", "HSV": "RGB"}


def is_greyscale(mode: str) -> bool:
    """Whether Pillow's pixel format ``mode`` holds one grey channel (with or without alpha
    or more than 8 bits), as decoding with one channel loses nothing of it."""
    return mode in _HIGH_DEPTH or mode == "LA" or _EIGHT_BIT.get(mode) == "L"


class ImageRejected(Exception):
    """An image file that cannot be used, with ``reason`` (a key of ``REJECT_REASONS``) and
    ``detail`` (what was wrong with this file, with its numbers, and what to do about it)."""

    def __init__(self, reason: str, detail: str):
        if reason not in REJECT_REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}; use one of "
                             f"{sorted(REJECT_REASONS)}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self):
        return type(self), (self.reason, self.detail)


@dataclass(frozen=True)
class DecodeSettings:
    """How ``decode_image`` checks and shapes an image.

    ``image_size``: side of the square output, in pixels. ``channels``: 1 for grayscale or 3
    for RGB. ``max_pixels``: largest width x height accepted (image bombs are refused from
    their header). ``min_size``: smallest shorter side accepted. ``background``: the RGB
    colour that transparent pixels are laid on. A value out of range raises ``ValueError``.
    """

    image_size: int = 28
    channels: int = 1
    max_pixels: int = 50_000_000
    min_size: int = 8
    background: tuple[int, int, int] = (255, 255, 255)

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB); got {self.channels!r}")
        for name in ("image_size", "max_pixels", "min_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive whole number; got {value!r}")
        background = self.background
        if (not isinstance(background, tuple) or len(background) != 3
                or not all(isinstance(v, int) and 0 <= v <= 255 for v in background)):
            raise ValueError(f"background must be an (R, G, B) tuple of integers 0-255; got "
                             f"{background!r}")


def detect_format(data: bytes) -> str | None:
    """The image format named by the first bytes of ``data``: ``'png'``, ``'jpeg'``,
    ``'gif'``, ``'bmp'``, ``'webp'`` or ``'tiff'``; ``None`` for anything else.

    Only the signature is read, so a file can be detected and still fail to decode.
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if (data.startswith(b"BM") and len(data) >= 18
            and int.from_bytes(data[14:18], "little") in _BMP_INFO_HEADER_SIZES):
        return "bmp"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "tiff"
    return None


def decode_image(data: bytes, settings: DecodeSettings) -> np.ndarray:
    """The pixels of one image file, checked, converted and resized.

    Returns a uint8 array of shape (image_size, image_size, channels). Raises
    ``ImageRejected`` for a file that cannot be used; its ``reason`` is one of
    ``REJECT_REASONS`` and its ``detail`` says what was found and what to do.

    Pixel formats become 8-bit grayscale or RGB this way:

    - transparency (RGBA, LA, palettes with a transparent colour, a tRNS colour) is laid on
      ``settings.background``;
    - 1-bit becomes black and white, palettes their colours, CMYK, YCbCr and HSV become RGB;
    - 16-bit grayscale (I;16 and its byte orders) is scaled from 0-65535 to 0-255, so white
      stays white rather than clipping; 32-bit integers (I) are read the same way when all
      values lie in 0-65535, which is how Pillow opens 16-bit files, and otherwise stretched
      from their own minimum to their maximum;
    - 32-bit float (F) is read as 0.0-1.0 when all values lie in that range, and otherwise
      stretched from its minimum to its maximum; NaN becomes black, infinities black or
      white. A stretched image whose pixels are all equal becomes black;
    - RGB becomes grayscale by ITU-R 601 luma (L = 0.299 R + 0.587 G + 0.114 B), grayscale
      becomes RGB by repeating the one channel.

    Geometry: the centre square of the (EXIF-oriented) picture is kept, cutting the longer
    side equally at both ends, and resized with Lanczos; smaller pictures are enlarged.

    Example::

        settings = DecodeSettings(image_size=64, channels=3)
        pixels = decode_image(Path("shoe.jpg").read_bytes(), settings)  # (64, 64, 3) uint8
    """
    if not data:
        raise ImageRejected("empty", "the file has zero bytes; it was probably not written "
                                     "completely, copy it again from its source")
    image_format = detect_format(data)
    if image_format is None:
        raise ImageRejected("not_an_image", f"the file does not start like a PNG, JPEG, GIF, "
                                            f"BMP, WebP or TIFF image ({_looks_like(data)}); "
                                            f"convert it to one of these formats or remove it "
                                            f"from the input")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", module=r"PIL\.")
        image = _read_first_frame(data, image_format, settings)
        return _to_square_pixels(_to_eight_bit(image, settings), settings)


def _read_first_frame(data: bytes, image_format: str, settings: DecodeSettings) -> Image.Image:
    """The first frame of the file, checked from its header, decoded and oriented."""
    name = FORMAT_NAMES[image_format]
    try:
        image = Image.open(io.BytesIO(data), formats=[image_format.upper()])
        _check_header(image, settings)
        if image_format == "jpeg":
            _draft_jpeg(image, settings)
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        return image
    except Image.DecompressionBombError as error:
        raise ImageRejected("too_large", f"the header claims more pixels than Pillow will "
                                         f"decode at all ({error}); such a file cannot be used "
                                         f"whatever --max-pixels says") from None
    except UnidentifiedImageError:
        if _ends_early(data, image_format):
            raise ImageRejected("truncated", f"the file starts like a {name} image but ends "
                                             f"after {len(data)} bytes, inside its header; copy "
                                             f"it again from its source") from None
        raise ImageRejected("not_an_image", f"the file starts like a {name} image but its "
                                            f"header cannot be read; open it in an image editor "
                                            f"to check, or remove it") from None
    except _DECODER_FAILURES as error:
        raise _decoder_failure(error, data, image_format) from None


def _check_header(image: Image.Image, settings: DecodeSettings) -> None:
    """Refuse the image from its header size, before any pixel is decoded."""
    width, height = image.size
    pixels = width * height
    if pixels > settings.max_pixels:
        raise ImageRejected("too_large", f"image is {width}x{height} = {pixels} pixels, over "
                                         f"the limit of {settings.max_pixels}; raise "
                                         f"--max-pixels if this is intended")
    if min(width, height) < settings.min_size:
        raise ImageRejected("too_small", f"image is {width}x{height}, its shorter side "
                                         f"{min(width, height)} is under the minimum of "
                                         f"{settings.min_size}; lower --min-size if such small "
                                         f"images are intended")


def _draft_jpeg(image: Image.Image, settings: DecodeSettings) -> None:
    """Ask the JPEG decoder for a reduced scale (and for luma only when grayscale is wanted)."""
    wanted = settings.image_size * _DRAFT_MARGIN
    image.draft("L" if settings.channels == 1 else None, (wanted, wanted))


def _ends_early(data: bytes, image_format: str) -> bool:
    """Whether the file visibly stops before its format's end: a missing PNG IEND chunk, GIF
    trailer or JPEG end marker, fewer bytes than a WebP file's RIFF header announces, or a
    TIFF whose first directory lies beyond the end. BMP carries no such mark and is never
    judged cut off here."""
    if image_format == "png":
        return b"IEND" not in data[-16:]
    if image_format == "gif":
        return not data.rstrip(b"\x00").endswith(b"\x3b")
    if image_format == "jpeg":
        return b"\xff\xd9" not in data[-1024:]
    if image_format == "webp":
        return len(data) < 8 + int.from_bytes(data[4:8], "little")
    if image_format == "tiff":
        return _tiff_ends_early(data)
    return False


def _tiff_ends_early(data: bytes) -> bool:
    """Whether the first image directory of a TIFF (or BigTIFF) file runs past its end."""
    byte_order = "little" if data.startswith(b"II") else "big"
    big_tiff = data[2:4] in (b"+\x00", b"\x00+")
    # classic: 4-byte offset, 2-byte entry count, 12-byte entries, 4-byte next offset;
    # BigTIFF: 8-byte offset at byte 8, 8-byte count, 20-byte entries, 8-byte next offset
    offset_at, offset_size, count_size, entry_size = (8, 8, 8, 20) if big_tiff else (4, 4, 2, 12)
    directory = int.from_bytes(data[offset_at:offset_at + offset_size], byte_order)
    count_end = directory + count_size
    if len(data) < offset_at + offset_size or len(data) < count_end:
        return True
    entries = int.from_bytes(data[directory:count_end], byte_order)
    return len(data) < count_end + entries * entry_size + offset_size


def _decoder_failure(error: Exception, data: bytes, image_format: str) -> ImageRejected:
    """The rejection for a decoder error: ``truncated`` when the data stops early, otherwise
    ``corrupt``."""
    name = FORMAT_NAMES[image_format]
    message = f"{type(error).__name__}: {error}"
    if (isinstance(error, EOFError) or "truncated" in str(error).lower()
            or _ends_early(data, image_format)):
        return ImageRejected("truncated", f"the {name} data stops early after {len(data)} bytes "
                                          f"({message}); the file was probably cut off while "
                                          f"copying, copy it again from its source")
    return ImageRejected("corrupt", f"the {name} decoder failed ({message}); the file is "
                                    f"damaged, export it again or remove it")


def _to_eight_bit(image: Image.Image, settings: DecodeSettings) -> Image.Image:
    """The image as 8-bit L (channels 1) or RGB (channels 3), transparency composited."""
    mode = image.mode
    if mode in _HIGH_DEPTH:
        image = _high_depth_to_grayscale(image)
    elif mode in _WITH_ALPHA or (mode in _EIGHT_BIT and "transparency" in image.info):
        image = _composite(image, settings.background)
    elif mode in _EIGHT_BIT:
        if mode != _EIGHT_BIT[mode]:
            image = image.convert(_EIGHT_BIT[mode])
    else:
        raise ImageRejected("unsupported_mode", f"pixel format {mode!r} has no sensible "
                                                f"grayscale or RGB form here; convert the file "
                                                f"to 8-bit RGB or grayscale first")
    wanted = "L" if settings.channels == 1 else "RGB"
    return image if image.mode == wanted else image.convert(wanted)


def _composite(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """RGB: the image laid over a solid ``background`` according to its transparency."""
    foreground = image.convert("RGBA")
    canvas = Image.new("RGBA", foreground.size, background + (255,))
    return Image.alpha_composite(canvas, foreground).convert("RGB")


def _high_depth_to_grayscale(image: Image.Image) -> Image.Image:
    """L from 16-bit, 32-bit integer or 32-bit float grayscale, by the value range that
    ``decode_image`` documents, rounded to the nearest level."""
    low, high = _value_range(image)
    scale = 255.0 / (high - low) if high > low else 0.0
    # Pillow's float to 8-bit conversion clips and truncates: half a level more rounds.
    offset = 0.5 - low * scale
    return image.convert("F").point(lambda value: value * scale + offset).convert("L")


def _value_range(image: Image.Image) -> tuple[float, float]:
    """The values that become black and white: the type's range, or the image's own."""
    if image.mode.startswith("I;16"):
        return 0.0, 65535.0
    if image.mode == "I":
        low, high = image.getextrema()
        return (0.0, 65535.0) if 0 <= low and high <= 65535 else (float(low), float(high))

    values = np.asarray(image)
    finite = np.isfinite(values)
    if not finite.any():
        raise ImageRejected("unsupported_mode", "every pixel of this 32-bit float image is NaN "
                                                "or infinite, so it has no brightness range; "
                                                "remove it from the input")
    if not finite.all():
        values = values[finite]
    low, high = float(values.min()), float(values.max())
    return (0.0, 1.0) if 0.0 <= low and high <= 1.0 else (low, high)


def _to_square_pixels(image: Image.Image, settings: DecodeSettings) -> np.ndarray:
    """Centre square of the image resized to image_size: (size, size, channels) uint8.

    The square is cut out before resizing so that no colour from the cut edges bleeds in.
    """
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    if side != width or side != height:
        image = image.crop((left, top, left + side, top + side))
    size = settings.image_size
    square = image.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP)
    return np.asarray(square, dtype=np.uint8).reshape(size, size, settings.channels)


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG file bytes for one image of shape (H, W, 1) (grayscale) or (H, W, 3) (RGB), uint8.

    Raises ``ValueError`` naming the shape or dtype when the array is anything else.
    """
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3):
        raise ValueError(f"pixels must have shape (height, width, 1) or (height, width, 3); "
                         f"got {pixels.shape}")
    if pixels.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8 in [0, 255]; got dtype {pixels.dtype}")
    plane = pixels[:, :, 0] if pixels.shape[2] == 1 else pixels
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(plane)).save(buffer, format="PNG")
    return buffer.getvalue()


def pixels_to_array(raw: bytes, height: int, width: int, channels: int) -> np.ndarray:
    """The (height, width, channels) uint8 array whose ``tobytes()`` was stored as ``raw``.

    The array is a read-only view of ``raw``; copy it before changing pixels in place. Raises
    ``ImageRejected`` with reason ``corrupt`` when ``raw`` does not hold exactly
    height x width x channels bytes.
    """
    expected = height * width * channels
    if raw is None or len(raw) != expected:
        found = "no bytes" if raw is None else f"{len(raw)} bytes"
        raise ImageRejected("corrupt", f"stored pixels hold {found} but {height}x{width}x"
                                       f"{channels} needs {expected}; preprocess the dataset "
                                       f"again to rewrite its rows")
    return np.frombuffer(raw, dtype=np.uint8).reshape(height, width, channels)
