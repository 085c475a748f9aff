"""The image check every input image passes (source records, benchmarks) before any model sees it.

An image is usable when it exists, its header and every pixel decode (a truncated file fails
here, not in the middle of training), it is not larger than a pixel limit, and it has 8 bits per
channel. Every mode with 8-bit channels (RGB, L, P, RGBA, LA, CMYK, 1) is accepted: all our
consumers and LLaMA-Factory convert it to RGB the same way. Single-channel 16-bit or 32-bit
images (modes ``I;16*``, ``I``, ``F``) are refused: ``convert("RGB")`` clips them to white,
so the model would silently see a different picture.
"""

from __future__ import annotations

import os
import warnings

from PIL import Image

DEFAULT_MAX_PIXELS = 40_000_000  # 6324 × 6324; LLaVA-CoT's largest images are far below
_WIDE_MODES = ("I", "F")


def image_problem(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """Why the image at ``path`` cannot be used, or None when it can."""
    if not os.path.isfile(path):
        return f"file not found: {path}"
    try:
        with warnings.catch_warnings():
            # PIL warns above its own bomb limit and raises above twice it; we decide by ours.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    return (
                        f"image too large: {width}x{height} = {width * height} pixels, "
                        f"more than the limit of {max_pixels}: {path}"
                    )
                if image.mode.startswith(_WIDE_MODES):
                    return (
                        f"16-bit or wider image (mode {image.mode}): convert it to 8 bits per "
                        f"channel: {path}"
                    )
                image.load()  # every pixel: a truncated or corrupt file fails here
    except Image.DecompressionBombError as error:
        return f"image too large: {error}: {path}"
    except Exception as error:  # noqa: BLE001 - PIL raises many types for a bad file
        return f"cannot open image {path}: {error}"
    return None


# LLaMA-Factory's defaults for `image_max_pixels` / `image_min_pixels` (its ModelArguments).
LLAMAFACTORY_MAX_PIXELS = 768 * 768
LLAMAFACTORY_MIN_PIXELS = 32 * 32


def load_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """An RGB image from a file, read eagerly so the file handle is closed."""
    with Image.open(path) as image:
        return image.convert("RGB")


# The filters an image may be scaled with (config images.resample): bicubic is Pillow's default,
# which LLaMA-Factory 0.9.5 scales Stage I's images with; nearest is what the authors'
# LLaMA-Factory fork passed (a filter LLaMA-Factory later dropped: thin lines vanish).
RESAMPLING = {"bicubic": Image.Resampling.BICUBIC, "nearest": Image.Resampling.NEAREST}

# (min, max) pixels of an image, optionally with the filter's name as a third item.
PixelLimits = tuple[int, int] | tuple[int, int, str]


def fit_pixels(
    image: Image.Image, min_pixels: int, max_pixels: int, resample: str = "bicubic"
) -> Image.Image:
    """The image as LLaMA-Factory trains on it: scaled down to at most ``max_pixels`` and up to
    at least ``min_pixels`` (aspect kept, sides truncated to whole pixels), in RGB, with the
    filter ``resample`` names (:data:`RESAMPLING`).

    Generation applies the same rule, so a model answers at the resolution it was trained at
    (a processor's own limits, e.g. Qwen2.5-VL's 12.8M pixels, are far looser).
    """
    if resample not in RESAMPLING:
        raise ValueError(f"unknown resampling filter {resample!r}; expected {sorted(RESAMPLING)}")
    method = RESAMPLING[resample]
    if image.width * image.height > max_pixels:
        factor = (max_pixels / (image.width * image.height)) ** 0.5
        size = (int(image.width * factor), int(image.height * factor))
        image = image.resize(size, resample=method)
    if image.width * image.height < min_pixels:
        factor = (min_pixels / (image.width * image.height)) ** 0.5
        size = (int(image.width * factor), int(image.height * factor))
        image = image.resize(size, resample=method)
    return image if image.mode == "RGB" else image.convert("RGB")


def pixel_limits(
    min_pixels: int | None, max_pixels: int | None, resample: str = "bicubic"
) -> PixelLimits | None:
    """The limits ``fit_pixels`` takes (None: images as stored, when there is no maximum); the
    filter is named only when it is not the default."""
    if not max_pixels:
        return None
    limits = (min_pixels or 1, max_pixels)
    return limits if resample == "bicubic" else (*limits, resample)
