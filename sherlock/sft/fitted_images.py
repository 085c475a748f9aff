"""Stage I's images scaled by us, for a filter LLaMA-Factory does not offer.

LLaMA-Factory 0.9.5 scales an image into ``image_min_pixels``..``image_max_pixels`` with Pillow's
default filter (bicubic) and has no setting for another. With ``images.resample: nearest`` (the
authors' LLaMA-Factory fork scaled with nearest neighbour) the Stage I run files train on copies
we scale with ``sherlock.data.images.fit_pixels``: each image the limits would change is written
once, scaled, and the rows point at it; LLaMA-Factory then finds it within its limits and leaves
it as it is. Images already within the limits are not copied.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from PIL import Image

from sherlock.data.images import fit_pixels
from sherlock.data.records import single_image


def fitted_name(path: str) -> str:
    """The copy's file name: a digest of the source path (the same image, the same copy)."""
    return hashlib.sha256(path.encode("utf-8")).hexdigest()[:24] + ".png"


def fit_row_images(
    rows: list[dict[str, Any]],
    min_pixels: int,
    max_pixels: int,
    resample: str,
    image_dir: str | Path,
    media_dir: str | Path,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The rows with every image the limits would change replaced by a scaled copy in
    ``image_dir``, and counts (images seen, copies written). Relative image paths are read from
    ``media_dir`` (LLaMA-Factory's ``media_dir``). The rows given are not changed."""
    image_dir, media_dir = Path(image_dir), Path(media_dir)
    image_dir.mkdir(parents=True, exist_ok=True)
    copies: dict[str, str] = {}  # source path -> the path the rows use
    out = []
    for number, row in enumerate(rows, start=1):
        path = single_image(row.get("images"))
        if path is None:
            raise ValueError(f"row {number} ({row.get('id', '?')}): images: expected one path")
        if path not in copies:
            source = Path(path) if Path(path).is_absolute() else media_dir / path
            with Image.open(source) as handle:
                image = handle.convert("RGB")
            fitted = fit_pixels(image, min_pixels, max_pixels, resample)
            if fitted.size == image.size:
                copies[path] = path
            else:
                target = image_dir / fitted_name(path)
                fitted.save(target)
                copies[path] = str(target.resolve())
        out.append({**row, "images": [copies[path]]})
    written = sum(copy != path for path, copy in copies.items())
    return out, {"images": len(copies), "scaled_copies": written}
