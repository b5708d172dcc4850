"""Pictures drawn with Pillow: sizes, modes, frame counts and robustness to odd inputs."""

import io
import math

import numpy as np
import pytest
from PIL import Image

from gan_lib import visuals


def random_images(count: int, channels: int, size: int = 28, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(count, size, size, channels), dtype=np.uint8)


def distinct_colours(image: Image.Image) -> int:
    return len(image.getcolors(maxcolors=1 << 20) or [])


def test_grid_of_seven_grayscale_images_has_three_columns_and_three_rows():
    grid = visuals.image_grid(random_images(7, channels=1))

    assert grid.mode == "L"
    assert grid.size == (3 * 28 + 4 * 2, 3 * 28 + 4 * 2)


def test_grid_of_seven_rgb_images_with_scale_and_four_columns_has_two_rows():
    grid = visuals.image_grid(random_images(7, channels=3), columns=4, padding=1, scale=2)

    assert grid.mode == "RGB"
    assert grid.size == (4 * 56 + 5, 2 * 56 + 3)


def test_grid_places_each_image_at_its_cell():
    images = random_images(7, channels=1)

    grid = np.asarray(visuals.image_grid(images, padding=2))
    second_row_first_column = grid[2 + 28 + 2:2 + 28 + 2 + 28, 2:2 + 28]
    assert np.array_equal(second_row_first_column, images[3, ..., 0])


def test_grid_refuses_float_images_and_says_how_to_convert():
    with pytest.raises(ValueError, match=r"uint8.*127\.5"):
        visuals.image_grid(np.zeros((4, 8, 8, 1), dtype=np.float32))


def test_grid_refuses_four_channel_images_naming_the_shape():
    with pytest.raises(ValueError, match=r"\(2, 8, 8, 4\)"):
        visuals.image_grid(np.zeros((2, 8, 8, 4), dtype=np.uint8))


def test_gif_holds_every_frame_and_loops_forever():
    frames = [visuals.image_grid(random_images(4, channels=1, seed=seed)) for seed in range(5)]

    with Image.open(io.BytesIO(visuals.gif_bytes(frames, duration_ms=250))) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == 5
        assert gif.info["loop"] == 0
        assert gif.info["duration"] == 250


def test_gif_refuses_frames_of_different_sizes():
    frames = [Image.new("L", (10, 10)), Image.new("L", (12, 10))]

    with pytest.raises(ValueError, match="same size"):
        visuals.gif_bytes(frames)


def test_png_bytes_reopen_as_the_same_picture():
    grid = visuals.image_grid(random_images(3, channels=3))

    with Image.open(io.BytesIO(visuals.to_png_bytes(grid))) as reopened:
        assert reopened.format == "PNG"
        assert np.array_equal(np.asarray(reopened), np.asarray(grid))


def training_history(count: int) -> list[dict]:
    return [{"step": 100 * index, "d_loss": 1.4 - 0.01 * index, "g_loss": 0.7 + 0.02 * index,
             "d_real": 0.6, "d_fake": 0.4} for index in range(count)]


def test_loss_curve_draws_lines_in_the_series_colours():
    curve = visuals.loss_curve(training_history(50))

    colours = {colour for _, colour in curve.getcolors(maxcolors=1 << 20)}
    assert curve.size == (640, 360)
    assert all(colour in colours for _, _, colour, _ in visuals.LOSS_SERIES)


def test_loss_curve_of_one_row_draws_its_points():
    curve = visuals.loss_curve([{"step": 0, "d_loss": 1.38, "g_loss": 0.69}], 320, 200)

    colours = {colour for _, colour in curve.getcolors(maxcolors=1 << 20)}
    assert curve.size == (320, 200)
    assert visuals.LOSS_SERIES[0][2] in colours and visuals.LOSS_SERIES[1][2] in colours


def test_loss_curve_skips_nan_and_infinite_values():
    history = training_history(20)
    history[5]["d_loss"] = math.nan
    history[6]["g_loss"] = math.inf
    history[7]["d_loss"] = None

    curve = visuals.loss_curve(history)
    assert distinct_colours(curve) > 4


def test_loss_curve_with_no_finite_value_says_so_instead_of_failing():
    curve = visuals.loss_curve([{"step": 0, "d_loss": math.nan, "g_loss": math.nan}])

    assert distinct_colours(curve) > 1


def test_loss_curve_refuses_rows_without_losses_naming_the_row():
    with pytest.raises(ValueError, match=r"row 1 lacks \['g_loss'\]"):
        visuals.loss_curve([{"step": 0, "d_loss": 1, "g_loss": 1}, {"step": 1, "d_loss": 1}])


def test_contact_sheet_size_includes_a_caption_line_under_each_row():
    images = random_images(10, channels=1)
    captions = [f"Sneaker 0.{90 + index}" for index in range(10)]

    sheet = visuals.contact_sheet(images, captions, columns=4, scale=3)
    bare_height = 3 * 28 * 3 + 4 * 4
    assert sheet.mode == "RGB"
    assert sheet.width == 4 * 28 * 3 + 5 * 4
    assert sheet.height > bare_height + 3 * 8


def test_contact_sheet_writes_captions_below_the_images():
    images = np.full((2, 28, 28, 1), 255, dtype=np.uint8)

    sheet = np.asarray(visuals.contact_sheet(images, ["Bag 0.99", "Coat 0.51"], scale=2))
    caption_band = sheet[4 + 56:, :]
    assert (caption_band < 128).any()


def test_contact_sheet_needs_one_caption_per_image():
    with pytest.raises(ValueError, match="one caption per image"):
        visuals.contact_sheet(random_images(3, channels=1), ["a", "b"])


def test_bar_chart_draws_one_bar_per_value():
    shares = {"T-shirt/top": 0.12, "Trouser": 0.08, "Sneaker": 0.3, "Bag": 0.0, "Boot": 0.5}

    chart = visuals.bar_chart(shares, "label distribution")
    pixels = np.asarray(chart)
    bar_column = np.all(pixels == visuals.BAR_COLOUR, axis=-1)
    rows_with_bars = np.flatnonzero(bar_column.any(axis=1))
    bars = 1 + np.count_nonzero(np.diff(rows_with_bars) > 1)
    assert chart.size == (640, 360)
    assert bars == 4


def test_bar_chart_of_nothing_still_renders():
    chart = visuals.bar_chart({}, "label distribution", width=200, height=100)

    assert chart.size == (200, 100)
    assert distinct_colours(chart) > 1
