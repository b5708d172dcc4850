"""One image file from bytes to pixels: formats, rejections with their reasons, pixel formats,
orientation and geometry. Every file is built here with Pillow, small enough to stay fast."""

import io
import pickle
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from gan_lib.images import (REJECT_REASONS, DecodeSettings, ImageRejected, decode_image,
                            detect_format, encode_png, is_greyscale, pixels_to_array)

FORMATS = ["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"]
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def image_bytes(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def noise_image(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def rejection(data: bytes, settings: DecodeSettings = DecodeSettings()) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        decode_image(data, settings)
    return caught.value


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height 8-bit grayscale pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))


# Formats and shapes

@pytest.mark.parametrize("image_format", FORMATS)
@pytest.mark.parametrize("size, channels", [(28, 1), (64, 3)])
def test_every_format_decodes_to_the_requested_shape(image_format, size, channels):
    data = image_bytes(noise_image(), image_format)

    pixels = decode_image(data, DecodeSettings(image_size=size, channels=channels))

    assert pixels.shape == (size, size, channels)
    assert pixels.dtype == np.uint8


@pytest.mark.parametrize("image_format", FORMATS)
def test_detect_format_names_each_format_from_its_signature(image_format):
    data = image_bytes(noise_image(), image_format)

    assert detect_format(data) == image_format.lower()


def test_detect_format_returns_none_for_text():
    assert detect_format(b"BMW service history, 2019 to 2024\n") is None


# Rejections

def test_zero_byte_file_is_rejected_as_empty():
    assert rejection(b"").reason == "empty"


@pytest.mark.parametrize("image_format", FORMATS)
def test_truncated_file_is_rejected_as_truncated(image_format):
    data = image_bytes(noise_image(), image_format)

    refused = rejection(data[:len(data) // 2])

    assert refused.reason == "truncated"
    assert str(len(data) // 2) in refused.detail


@pytest.mark.parametrize("image_format", FORMATS)
def test_file_cut_inside_its_header_is_rejected_as_truncated(image_format):
    data = image_bytes(noise_image(), image_format)

    assert rejection(data[:20]).reason == "truncated"


def test_png_with_corrupt_bytes_in_the_middle_is_rejected_as_corrupt():
    data = bytearray(image_bytes(noise_image(), "PNG"))
    middle = len(data) // 2
    data[middle:middle + 32] = bytes(range(32))

    refused = rejection(bytes(data))

    assert refused.reason == "corrupt"
    assert "PNG" in refused.detail


def test_html_page_is_rejected_as_not_an_image_saying_what_it_looks_like():
    refused = rejection(b"<!DOCTYPE html><html>404 Not Found</html>")

    assert refused.reason == "not_an_image"
    assert "looks like an HTML page" in refused.detail


def test_not_an_image_detail_never_copies_the_file_content():
    secret = b"root:x:0:0:root:/root:/bin/bash\n"
    binary = bytes(range(200, 256)) * 4

    for data in (secret, binary):
        refused = rejection(data)
        assert refused.reason == "not_an_image"
        assert "root" not in refused.detail and "\\x" not in refused.detail


def test_image_over_max_pixels_is_rejected_as_too_large_with_its_size():
    data = image_bytes(noise_image(width=100, height=80), "PNG")

    refused = rejection(data, DecodeSettings(max_pixels=5000))

    assert refused.reason == "too_large"
    assert "100x80 = 8000 pixels" in refused.detail
    assert "5000" in refused.detail


def test_png_header_claiming_huge_dimensions_is_rejected_as_too_large():
    refused = rejection(png_claiming_size(100_000, 100_000))

    assert refused.reason == "too_large"


def test_header_over_max_pixels_is_refused_by_the_setting_without_pillow_warning():
    # 100 million pixels: over Pillow's warning threshold, under its hard limit.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        refused = rejection(png_claiming_size(10_000, 10_000))

    assert refused.reason == "too_large"
    assert "10000x10000 = 100000000 pixels" in refused.detail


def test_max_pixels_decides_over_pillows_own_warning_limit(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = image_bytes(noise_image(width=40, height=40), "PNG")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pixels = decode_image(data, DecodeSettings(max_pixels=1_000_000))

    assert pixels.shape == (28, 28, 1)


def test_file_over_pillows_hard_limit_is_rejected_as_too_large(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = image_bytes(noise_image(width=50, height=50), "PNG")

    refused = rejection(data, DecodeSettings(max_pixels=1_000_000))

    assert refused.reason == "too_large"
    assert "--max-pixels" in refused.detail


def test_image_with_short_side_under_min_size_is_rejected_as_too_small():
    data = image_bytes(noise_image(width=40, height=5), "PNG")

    refused = rejection(data, DecodeSettings(min_size=8))

    assert refused.reason == "too_small"
    assert "40x5" in refused.detail


@pytest.mark.parametrize("image_format", FORMATS)
def test_damaged_files_are_either_decoded_or_rejected_never_crash(image_format):
    rng = np.random.default_rng(7)
    original = image_bytes(noise_image(width=40, height=30), image_format)
    for _ in range(40):
        damaged = bytearray(original)
        for position in rng.integers(0, len(damaged), size=4):
            damaged[position] = rng.integers(0, 256)
        damaged = damaged[:rng.integers(len(damaged) // 2, len(damaged) + 1)]
        try:
            pixels = decode_image(bytes(damaged), DecodeSettings())
        except ImageRejected as refused:
            assert refused.reason in REJECT_REASONS
        else:
            assert pixels.shape == (28, 28, 1)


def test_rejection_reasons_are_all_explained():
    reasons = {"empty", "not_an_image", "truncated", "corrupt", "too_large", "too_small",
               "unsupported_mode", "outside_input", "file_too_large", "not_read"}

    assert set(REJECT_REASONS) == reasons
    assert all(REJECT_REASONS[reason] for reason in reasons)


def test_rejection_keeps_reason_and_detail_through_pickling():
    original = ImageRejected("too_small", "image is 4x4")

    copy = pickle.loads(pickle.dumps(original))

    assert (copy.reason, copy.detail) == ("too_small", "image is 4x4")


# Orientation and pixel formats

def test_exif_rotated_jpeg_is_turned_upright():
    # Stored with the dark half on top; orientation 6 means "turn 90 degrees clockwise to
    # view", which brings the top to the right.
    stored = np.full((64, 64), 255, dtype=np.uint8)
    stored[:32, :] = 0
    exif = Image.Exif()
    exif[0x0112] = 6
    data = image_bytes(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes())

    pixels = decode_image(data, DecodeSettings())[:, :, 0]

    assert pixels[:, :10].mean() > 200
    assert pixels[:, -10:].mean() < 50


def test_palette_transparency_is_composited_onto_the_background():
    indices = np.zeros((32, 32), dtype=np.uint8)
    indices[:, 16:] = 1
    palette_image = Image.frombytes("P", (32, 32), indices.tobytes())
    palette_image.putpalette([0, 0, 0, *RED] + [0, 0, 0] * 254)
    data = image_bytes(palette_image, "PNG", transparency=0)

    pixels = decode_image(data, DecodeSettings(image_size=32, channels=3, background=GREEN))

    assert tuple(pixels[16, 4]) == GREEN
    assert tuple(pixels[16, 28]) == RED


def test_half_transparent_rgba_is_blended_with_the_background():
    data = image_bytes(Image.new("RGBA", (16, 16), (255, 0, 0, 128)), "PNG")

    pixels = decode_image(data, DecodeSettings(image_size=16, channels=3))

    assert np.abs(pixels[8, 8].astype(int) - (255, 127, 127)).max() <= 1


def test_cmyk_jpeg_becomes_rgb():
    data = image_bytes(Image.new("CMYK", (32, 32), (0, 255, 0, 0)), "JPEG", quality=95)

    pixels = decode_image(data, DecodeSettings(image_size=32, channels=3))

    assert np.abs(pixels[16, 16].astype(int) - (255, 0, 255)).max() <= 8


@pytest.mark.parametrize("image_format, dtype", [("PNG", "<u2"), ("TIFF", ">u2")])
def test_16_bit_grayscale_maps_its_full_range_onto_0_to_255(image_format, dtype):
    bands = np.zeros((48, 48), dtype=dtype)
    bands[:, 16:32] = 32896
    bands[:, 32:] = 65535
    data = image_bytes(Image.fromarray(bands), image_format)

    pixels = decode_image(data, DecodeSettings(image_size=48))[:, :, 0]

    assert (pixels[24, 8], pixels[24, 24], pixels[24, 40]) == (0, 128, 255)


def test_float_image_within_0_and_1_is_scaled_by_255():
    values = np.full((16, 16), 0.5, dtype=np.float32)
    values[:, 8:] = 1.0
    data = image_bytes(Image.fromarray(values), "TIFF")

    pixels = decode_image(data, DecodeSettings(image_size=16))[:, :, 0]

    assert (pixels[8, 2], pixels[8, 12]) == (128, 255)


def test_float_image_outside_0_and_1_is_stretched_from_minimum_to_maximum():
    values = np.full((24, 24), 100.0, dtype=np.float32)
    values[:, 8:16] = 200.0
    values[:, 16:] = 300.0
    data = image_bytes(Image.fromarray(values), "TIFF")

    pixels = decode_image(data, DecodeSettings(image_size=24))[:, :, 0]

    assert (pixels[12, 4], pixels[12, 12], pixels[12, 20]) == (0, 128, 255)


def test_rgb_becomes_grayscale_by_itu_601_luma():
    data = image_bytes(Image.new("RGB", (16, 16), RED), "PNG")

    pixels = decode_image(data, DecodeSettings(image_size=16, channels=1))

    assert pixels[8, 8, 0] == 76


def test_grayscale_becomes_three_equal_channels():
    data = image_bytes(Image.new("L", (16, 16), 90), "PNG")

    pixels = decode_image(data, DecodeSettings(image_size=16, channels=3))

    assert tuple(pixels[8, 8]) == (90, 90, 90)


def test_one_bit_image_becomes_black_and_white():
    bits = Image.new("1", (16, 16), 0)
    bits.paste(1, (8, 0, 16, 16))
    data = image_bytes(bits, "PNG")

    pixels = decode_image(data, DecodeSettings(image_size=16))[:, :, 0]

    assert (pixels[8, 2], pixels[8, 12]) == (0, 255)


@pytest.mark.parametrize("mode, grey", [
    ("1", True), ("L", True), ("LA", True), ("I;16", True), ("I;16B", True), ("I", True),
    ("F", True), ("P", False), ("RGB", False), ("RGBA", False), ("CMYK", False),
    ("YCbCr", False)])
def test_greyscale_modes_are_told_from_colour_ones(mode, grey):
    assert is_greyscale(mode) is grey


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (32, 32), colour) for colour in (RED, GREEN, BLUE)]
    data = image_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)

    pixels = decode_image(data, DecodeSettings(image_size=32, channels=3))

    assert np.abs(pixels.astype(int) - RED).max() <= 2


# Geometry

def test_non_square_image_is_centre_cropped():
    thirds = Image.new("RGB", (90, 30), RED)
    thirds.paste(GREEN, (30, 0, 60, 30))
    thirds.paste(BLUE, (60, 0, 90, 30))
    data = image_bytes(thirds, "PNG")

    pixels = decode_image(data, DecodeSettings(image_size=28, channels=3)).astype(int)

    assert np.abs(pixels - GREEN).max() <= 2


def test_tall_image_keeps_its_middle_rows():
    bands = Image.new("L", (20, 60), 0)
    bands.paste(200, (0, 20, 20, 40))
    data = image_bytes(bands, "PNG")

    pixels = decode_image(data, DecodeSettings(image_size=20))

    assert np.all(pixels == 200)


@pytest.fixture
def jpeg_loads(monkeypatch):
    """(size, mode) of every JPEG as the decoder is asked to produce it."""
    loads = []
    original_load = JpegImagePlugin.JpegImageFile.load

    def recording_load(image):
        loads.append((image.size, image.mode))
        return original_load(image)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", recording_load)
    return loads


def test_large_jpeg_is_decoded_at_reduced_scale(jpeg_loads):
    data = image_bytes(noise_image(width=1200, height=900), "JPEG")

    pixels = decode_image(data, DecodeSettings(image_size=28, channels=3))

    assert pixels.shape == (28, 28, 3)
    assert jpeg_loads[0] == ((150, 113), "RGB")


def test_colour_jpeg_wanted_in_grayscale_is_decoded_as_luma_only(jpeg_loads):
    data = image_bytes(noise_image(width=64, height=64), "JPEG")

    decode_image(data, DecodeSettings(image_size=28, channels=1))

    assert jpeg_loads[0][1] == "L"


# Settings

def test_channels_other_than_1_or_3_raise_value_error():
    with pytest.raises(ValueError, match="channels"):
        DecodeSettings(channels=2)


def test_background_outside_0_to_255_raises_value_error():
    with pytest.raises(ValueError, match="background"):
        DecodeSettings(background=(0, 0, 300))


# Storage helpers

@pytest.mark.parametrize("channels", [1, 3])
def test_encode_png_round_trips_through_decode_image(channels):
    rng = np.random.default_rng(1)
    original = rng.integers(0, 256, (28, 28, channels), dtype=np.uint8)

    decoded = decode_image(encode_png(original), DecodeSettings(image_size=28, channels=channels))

    assert np.array_equal(decoded, original)


def test_encode_png_refuses_four_channels_naming_the_shape():
    with pytest.raises(ValueError, match=r"\(8, 8, 4\)"):
        encode_png(np.zeros((8, 8, 4), dtype=np.uint8))


def test_pixels_to_array_inverts_tobytes():
    original = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)

    assert np.array_equal(pixels_to_array(original.tobytes(), 2, 3, 3), original)


def test_pixels_to_array_of_the_wrong_length_is_rejected_as_corrupt():
    with pytest.raises(ImageRejected) as caught:
        pixels_to_array(b"\x00" * 10, 28, 28, 1)

    assert caught.value.reason == "corrupt"
    assert "784" in caught.value.detail
