"""Pictures for the report: image grids, training GIFs, loss curves, contact sheets, bar charts.

Everything is drawn with Pillow alone and returned as a ``PIL.Image.Image``;
``to_png_bytes`` and ``gif_bytes`` turn pictures into bytes, so callers write them through
their own storage layer (local disk or WebHDFS alike). Text uses Pillow's default font.

Image arrays are (N, H, W, C) ``uint8`` with C = 1 (grayscale) or 3 (RGB); (N, H, W) is
taken as grayscale. A generator's tanh output in [-1, 1] becomes such an array with
``((images + 1) * 127.5).round().clip(0, 255).astype(np.uint8)``.
"""

import io
import logging
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

logger = logging.getLogger(__name__)

BACKGROUND = (255, 255, 255)
INK = (40, 40, 40)
GRID_LINE = (225, 225, 225)
MUTED = (120, 120, 120)

# Series drawn by loss_curve, in drawing order: (history key, legend text, colour, width).
LOSS_SERIES = (
    ("d_loss", "D loss", (31, 119, 180), 2),
    ("g_loss", "G loss", (255, 127, 14), 2),
    ("d_real", "D(x)", (44, 160, 44), 1),
    ("d_fake", "D(G(z))", (214, 39, 40), 1),
)
BAR_COLOUR = (31, 119, 180)


def to_png_bytes(image: Image.Image) -> bytes:
    """The picture encoded as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _as_image_batch(images) -> np.ndarray:
    """``images`` as a (N, H, W, C) uint8 array with C in {1, 3}, or a ValueError."""
    batch = np.asarray(images)
    if batch.ndim == 3:
        batch = batch[..., np.newaxis]
    if batch.ndim != 4 or batch.shape[-1] not in (1, 3):
        raise ValueError(f"images must be (N, H, W, C) with C = 1 or 3, or (N, H, W); got "
                         f"shape {batch.shape}.")
    if len(batch) == 0:
        raise ValueError(f"there are no images to draw (shape {batch.shape}).")
    if batch.dtype != np.uint8:
        raise ValueError(f"images must be uint8 pixels in [0, 255]; got dtype {batch.dtype}. "
                         f"Convert tanh output with ((images + 1) * 127.5).round()"
                         f".clip(0, 255).astype(np.uint8).")
    return batch


def _to_pil(pixels: np.ndarray, scale: int) -> Image.Image:
    """One (H, W, C) uint8 image as a Pillow image enlarged ``scale`` times (no smoothing)."""
    image = Image.fromarray(pixels[..., 0], "L") if pixels.shape[-1] == 1 else \
        Image.fromarray(pixels, "RGB")
    if scale != 1:
        size = (image.width * scale, image.height * scale)
        image = image.resize(size, Image.Resampling.NEAREST)
    return image


def _check_positive(value: int, name: str, minimum: int = 1) -> int:
    if int(value) < minimum:
        raise ValueError(f"{name} must be at least {minimum}; got {value}.")
    return int(value)


def image_grid(images: np.ndarray, columns: int | None = None, padding: int = 2,
               scale: int = 1) -> Image.Image:
    """All ``images`` in one picture, row by row, ``padding`` white pixels around each.

    ``columns`` defaults to ceil(sqrt(N)); the last row is left partly empty when N is not a
    multiple of it. Each image is enlarged ``scale`` times with nearest-neighbour pixels.
    The result is mode ``L`` for grayscale input and ``RGB`` for colour input, of size
    ``(columns * W * scale + (columns + 1) * padding, rows * H * scale + (rows + 1) * padding)``.
    """
    batch = _as_image_batch(images)
    count, height, width, channels = batch.shape
    columns = _check_positive(columns or math.ceil(math.sqrt(count)), "columns")
    padding = _check_positive(padding, "padding", minimum=0)
    scale = _check_positive(scale, "scale")
    rows = math.ceil(count / columns)

    cell_width, cell_height = width * scale, height * scale
    mode, fill = ("L", 255) if channels == 1 else ("RGB", BACKGROUND)
    grid = Image.new(mode, (columns * cell_width + (columns + 1) * padding,
                            rows * cell_height + (rows + 1) * padding), fill)
    for index in range(count):
        row, column = divmod(index, columns)
        grid.paste(_to_pil(batch[index], scale),
                   (padding + column * (cell_width + padding),
                    padding + row * (cell_height + padding)))
    return grid


def gif_bytes(frames: list[Image.Image], duration_ms: int = 400) -> bytes:
    """An animated GIF of ``frames`` shown ``duration_ms`` each, looping forever.

    All frames must have the same size. GIF holds at most 256 colours per frame, so colour
    frames are quantised. Pillow merges a frame identical to the one before it into that
    frame (adding up their durations), so the file can hold fewer frames than were given.
    """
    if not frames:
        raise ValueError("a GIF needs at least one frame; got none.")
    sizes = {frame.size for frame in frames}
    if len(sizes) != 1:
        raise ValueError(f"all GIF frames must have the same size; got sizes {sorted(sizes)}.")
    duration_ms = _check_positive(duration_ms, "duration_ms", minimum=10)

    buffer = io.BytesIO()
    first, *rest = frames
    first.save(buffer, format="GIF", save_all=True, append_images=rest,
               duration=duration_ms, loop=0)
    return buffer.getvalue()


FONT_SIZE = 12  # Pillow's built-in face at its default 10 px draws spaces 2 px wide


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def _nice_ticks(low: float, high: float, count: int = 5, outward: bool = False) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) for [low, high].

    The ticks lie inside the range, or with ``outward`` the first and last tick enclose it.
    """
    if not high > low:
        return [low]
    raw_step = (high - low) / max(count - 1, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw_step))
    step = next(multiple * magnitude for multiple in (1, 2, 5, 10)
                if multiple * magnitude >= raw_step)
    slack = -1e-9 if outward else 1e-9
    if outward:
        first_index, last_index = math.floor(low / step - slack), math.ceil(high / step + slack)
    else:
        first_index, last_index = math.ceil(low / step - slack), math.floor(high / step + slack)
    return [0.0 if index == 0 else index * step for index in range(first_index, last_index + 1)]


def _tick_label(value: float) -> str:
    return f"{value:.6g}"


def _value(row: dict, key: str) -> float:
    """A history value as a float; missing, None and unparsable values become NaN."""
    try:
        return float(row.get(key))
    except (TypeError, ValueError):
        return math.nan


def _series_from_history(history: list[dict]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Steps and one value array per drawable series, sorted by step."""
    for index, row in enumerate(history):
        missing = [key for key in ("step", "d_loss", "g_loss") if key not in row]
        if missing:
            raise ValueError(f"history row {index} lacks {missing}; every row needs step, "
                             f"d_loss and g_loss (got keys {sorted(row)}).")
    rows = sorted(history, key=lambda row: _value(row, "step"))
    steps = np.array([_value(row, "step") for row in rows])
    series = {}
    for key, *_ in LOSS_SERIES:
        if key in ("d_loss", "g_loss") or any(key in row for row in rows):
            series[key] = np.array([_value(row, key) for row in rows])
    return steps, series


def _padded_range(values: np.ndarray) -> tuple[float, float]:
    """The finite range of ``values``, widened when it is a single value."""
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12:
        margin = max(abs(low) * 0.1, 0.5)
        return low - margin, high + margin
    return low, high


def _draw_placeholder(image: Image.Image, message: str) -> Image.Image:
    draw = ImageDraw.Draw(image)
    font = _font()
    text_width, text_height = _text_size(draw, message, font)
    draw.text(((image.width - text_width) / 2, (image.height - text_height) / 2), message,
              fill=MUTED, font=font)
    return image


def loss_curve(history: list[dict], width: int = 640, height: int = 360) -> Image.Image:
    """Discriminator and generator loss against training step, as an RGB picture.

    Each ``history`` row holds ``step``, ``d_loss`` and ``g_loss`` (and optionally
    ``d_real`` and ``d_fake``, the discriminator's mean output on real and fake images,
    drawn as thinner lines on the same axis). Rows are drawn in step order. A NaN, infinite
    or missing value leaves a gap in its line, and a point with no finite neighbour is drawn
    as a dot, so a history of one row still shows its values. With no finite value at all
    the picture says so instead of drawing lines.
    """
    _check_positive(width, "width", minimum=160)
    _check_positive(height, "height", minimum=120)
    image = Image.new("RGB", (width, height), BACKGROUND)
    if not history:
        return _draw_placeholder(image, "no training history yet")
    steps, series = _series_from_history(history)
    finite_steps = np.isfinite(steps)
    finite_values = np.concatenate(
        [values[finite_steps & np.isfinite(values)] for values in series.values()])
    if finite_values.size == 0:
        return _draw_placeholder(image, "no finite loss values to draw")

    draw = ImageDraw.Draw(image)
    font = _font()
    x_low, x_high = _padded_range(steps[finite_steps])
    y_ticks = _nice_ticks(*_padded_range(finite_values), outward=True)
    y_low, y_high = y_ticks[0], y_ticks[-1]
    x_ticks = _nice_ticks(x_low, x_high, count=6)
    if np.all(steps[finite_steps] == np.round(steps[finite_steps])):
        x_ticks = [tick for tick in x_ticks if tick == round(tick)]
    label_width = max(_text_size(draw, _tick_label(tick), font)[0] for tick in y_ticks)
    _, line_height = _text_size(draw, "0123456789", font)
    left, right = label_width + 14, width - 16
    top, bottom = line_height + 16, height - 2 * line_height - 14

    def x_of(step: float) -> float:
        return left + (step - x_low) / (x_high - x_low) * (right - left)

    def y_of(value: float) -> float:
        return bottom - (value - y_low) / (y_high - y_low) * (bottom - top)

    # Axes, grid lines and tick labels.
    for tick in y_ticks:
        y = y_of(tick)
        draw.line([(left, y), (right, y)], fill=GRID_LINE)
        text_width, text_height = _text_size(draw, _tick_label(tick), font)
        draw.text((left - 6 - text_width, y - text_height / 2), _tick_label(tick), fill=INK,
                  font=font)
    for tick in x_ticks:
        x = x_of(tick)
        draw.line([(x, bottom), (x, bottom + 4)], fill=INK)
        text_width, _ = _text_size(draw, _tick_label(tick), font)
        draw.text((x - text_width / 2, bottom + 6), _tick_label(tick), fill=INK, font=font)
    draw.line([(left, top), (left, bottom), (right, bottom)], fill=INK)
    axis_title = "training step"
    text_width, _ = _text_size(draw, axis_title, font)
    draw.text(((left + right - text_width) / 2, height - line_height - 6), axis_title,
              fill=MUTED, font=font)

    # One line per series, broken wherever a value or a step is not finite.
    legend = []
    for key, label, colour, line_width in LOSS_SERIES:
        if key not in series:
            continue
        legend.append((label, colour))
        finite = finite_steps & np.isfinite(series[key])
        run = []
        for index in range(len(steps) + 1):
            if index < len(steps) and finite[index]:
                run.append((x_of(steps[index]), y_of(series[key][index])))
                continue
            if len(run) == 1:
                x, y = run[0]
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
            elif run:
                draw.line(run, fill=colour, width=line_width)
            run = []

    # Legend along the top edge.
    x = left
    for label, colour in legend:
        draw.rectangle([x, 6, x + 14, 6 + line_height], fill=colour)
        draw.text((x + 18, 6), label, fill=INK, font=font)
        x += 18 + _text_size(draw, label, font)[0] + 16
    return image


def _fit_caption(draw: ImageDraw.ImageDraw, caption: str, font, width: int) -> str:
    """``caption`` shortened with an ellipsis until it fits ``width`` pixels."""
    if _text_size(draw, caption, font)[0] <= width:
        return caption
    while caption and _text_size(draw, caption + "...", font)[0] > width:
        caption = caption[:-1]
    return caption + "..." if caption else ""


def contact_sheet(images: np.ndarray, captions: list[str], columns: int = 8,
                  scale: int = 3) -> Image.Image:
    """Images in a grid with one line of caption under each, such as ``"Sneaker 0.93"``.

    Images are enlarged ``scale`` times; a caption wider than its image is shortened with
    "...". The result is RGB; each cell is ``W * scale`` wide and ``H * scale`` plus one text
    line high, with 4 pixels between cells. ``columns`` is reduced to N when there are fewer
    images than columns.
    """
    batch = _as_image_batch(images)
    count, height, width, _ = batch.shape
    if len(captions) != count:
        raise ValueError(f"there must be one caption per image; got {len(captions)} captions "
                         f"for images of shape {batch.shape}.")
    columns = min(_check_positive(columns, "columns"), count)
    scale = _check_positive(scale, "scale")
    rows = math.ceil(count / columns)
    padding = 4

    font = _font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    _, text_height = _text_size(measure, "Ag0.9", font)
    cell_width, image_height = width * scale, height * scale
    cell_height = image_height + text_height + 6
    sheet = Image.new("RGB", (columns * cell_width + (columns + 1) * padding,
                              rows * cell_height + (rows + 1) * padding), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for index in range(count):
        row, column = divmod(index, columns)
        x = padding + column * (cell_width + padding)
        y = padding + row * (cell_height + padding)
        sheet.paste(_to_pil(batch[index], scale).convert("RGB"), (x, y))
        caption = _fit_caption(draw, str(captions[index]), font, cell_width)
        caption_width, _ = _text_size(draw, caption, font)
        draw.text((x + (cell_width - caption_width) / 2, y + image_height + 3), caption,
                  fill=INK, font=font)
    return sheet


def bar_chart(values: dict[str, float], title: str, width: int = 640,
              height: int = 360) -> Image.Image:
    """One horizontal bar per entry of ``values``, in the given order, with a title.

    Made for distributions such as class shares: names on the left, bars growing from zero
    (to the left for negative values), and each value written after its bar. A non-finite
    value gets no bar and is written as such. An empty ``values`` gives a picture that says
    there is nothing to show.
    """
    _check_positive(width, "width", minimum=160)
    _check_positive(height, "height", minimum=80)
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = _font()
    title_width, line_height = _text_size(draw, title, font)
    draw.text(((width - title_width) / 2, 6), title, fill=INK, font=font)
    if not values:
        return _draw_placeholder(image, "no values to show")

    names = [str(name) for name in values]
    numbers = np.array([_value(values, name) for name in values], dtype=np.float64)
    finite = numbers[np.isfinite(numbers)]
    low = min(0.0, float(finite.min())) if finite.size else 0.0
    high = max(0.0, float(finite.max())) if finite.size else 1.0
    if high - low < 1e-12:
        high = low + 1.0
    value_labels = [f"{number:.3g}" for number in numbers]

    name_width = max(_text_size(draw, name, font)[0] for name in names)
    value_width = max(_text_size(draw, label, font)[0] for label in value_labels)
    left = min(name_width + 12, width // 3)
    right = width - value_width - 12
    top, bottom = line_height + 16, height - 8
    slot = (bottom - top) / len(names)

    def x_of(number: float) -> float:
        return left + (number - low) / (high - low) * (right - left)

    zero = x_of(0.0)
    for index, (name, number, label) in enumerate(zip(names, numbers, value_labels)):
        middle = top + (index + 0.5) * slot
        shown = _fit_caption(draw, name, font, left - 8)
        text_width, text_height = _text_size(draw, shown, font)
        draw.text((left - 6 - text_width, middle - text_height / 2), shown, fill=INK,
                  font=font)
        end = zero
        if math.isfinite(number) and number != 0:
            end = x_of(number)
            thickness = max(slot * 0.35, 1.0)
            draw.rectangle([min(zero, end), middle - thickness, max(zero, end),
                            middle + thickness], fill=BAR_COLOUR)
        draw.text((max(zero, end) + 4, middle - text_height / 2), label, fill=INK, font=font)
    draw.line([(zero, top), (zero, bottom)], fill=INK)
    return image
