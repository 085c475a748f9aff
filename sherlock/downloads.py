"""Opt-in downloads (config ``downloads``) from the places the presets' inputs are published.

- ``fetch_model``: a Hugging Face hub model (the base model, a judge) into a local folder.
- ``fetch_llava_cot``: LLaVA-CoT-100k (``Xkev/LLaVA-CoT-100k``, a hub dataset): its
  ``train.jsonl`` and its images, published as one zip archive split into parts
  (``image.zip.part-aa`` ...), joined and unpacked into the image root; then the first records'
  image paths are checked against the unpacked folder.

Each writes its target last (complete or absent), so an interrupted download never looks done.
VLMEvalKit's benchmark files are not fetched here: their hosting addresses change between
VLMEvalKit versions, whose own ``build_dataset`` knows the current ones (the plan's warning
gives the command).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

LLAVA_COT_HUB = "Xkev/LLaVA-CoT-100k"
LLAVA_COT_FILE = "train.jsonl"
IMAGE_PARTS = "image.zip.part-*"
CHECKED_RECORDS = 200


def _snapshot_download(**kwargs: Any) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(**kwargs)


def fetch_model(
    repo_id: str, folder: str | Path, download: Callable[..., str] | None = None
) -> Path:
    """The hub model ``repo_id`` downloaded into ``folder`` (a sibling temporary folder, renamed
    into place once whole)."""
    download = download or _snapshot_download
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(folder.name + ".partial")
    download(repo_id=repo_id, local_dir=str(partial))
    if not (partial / "config.json").is_file():
        raise RuntimeError(f"{repo_id}: the download holds no config.json; not a model?")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)
    return folder


def join_parts(parts: list[Path], target: Path) -> Path:
    """Concatenate a split archive's parts, in name order, into ``target``."""
    with open(target, "wb") as out:
        for part in sorted(parts, key=lambda p: p.name):
            with open(part, "rb") as handle:
                shutil.copyfileobj(handle, out, 1 << 24)
    return target


def image_check(jsonl: Path, image_root: Path, records: int = CHECKED_RECORDS) -> tuple[int, int]:
    """(records checked, images found under ``image_root``) of the first ``records`` records."""
    checked = found = 0
    with open(jsonl, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            image = json.loads(line).get("image")
            checked += 1
            found += bool(image) and (image_root / image).is_file()
            if checked == records:
                break
    return checked, found


def fetch_llava_cot(
    jsonl: str | Path,
    image_root: str | Path,
    repo_id: str = LLAVA_COT_HUB,
    download: Callable[..., str] | None = None,
) -> Path:
    """LLaVA-CoT-100k's records into ``jsonl`` and its images unpacked under ``image_root``.

    The records file is written last; it is refused (left out) when fewer than 95% of the
    first records' images are found under ``image_root``, naming the folder it looked in.
    """
    download = download or _snapshot_download
    jsonl, image_root = Path(jsonl), Path(image_root)
    image_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=image_root, prefix=".download-") as scratch:
        scratch = Path(scratch)
        download(repo_id=repo_id, repo_type="dataset", local_dir=str(scratch),
                 allow_patterns=[LLAVA_COT_FILE, IMAGE_PARTS])  # fmt: skip
        parts = sorted(scratch.glob(IMAGE_PARTS))
        if not parts or not (scratch / LLAVA_COT_FILE).is_file():
            raise RuntimeError(f"{repo_id}: expected {LLAVA_COT_FILE} and {IMAGE_PARTS}")
        archive = join_parts(parts, scratch / "image.zip")
        for part in parts:
            part.unlink()  # the joined archive holds them; halve the disk needed
        with zipfile.ZipFile(archive) as images:
            images.extractall(image_root)
        archive.unlink()
        checked, found = image_check(scratch / LLAVA_COT_FILE, image_root)
        if checked and found < 0.95 * checked:
            raise RuntimeError(
                f"{repo_id}: only {found} of the first {checked} records' images are under "
                f"{image_root} after unpacking; look where the archive put them and set "
                "source.image_root to that folder (the records were not written)"
            )
        jsonl.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(scratch / LLAVA_COT_FILE), jsonl)
    return jsonl
