"""The bad-input catalogue: every case gets a named error or a counted reject, never silence.

The catalogue, one row per case and what happens, is the table in docs/reliability.md ("Bad input is
named, never dropped silently"); every row is tested here.
"""

from __future__ import annotations

import copy
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from sherlock.config import ConfigError, validate_config
from sherlock.data.records import SourceDataError, load_records
from sherlock.evaluation.benchmark_files import BenchmarkError, read_benchmark
from sherlock.preference.records import PreferenceDataError, load_preferences

ROOT = Path(__file__).resolve().parents[1]
ANSWER = (
    "<SUMMARY>Find the colour.</SUMMARY><CAPTION>A red circle.</CAPTION>"
    "<REASONING>The circle is red.</REASONING><CONCLUSION>red</CONCLUSION>"
)


def _record(record_id: str, image: str, answer: str = ANSWER, turns=None) -> dict:
    conversations = turns or [
        {"from": "human", "value": "<image>What colour is the circle?"},
        {"from": "gpt", "value": answer},
    ]
    return {"id": record_id, "image": image, "conversations": conversations}


def _truncated(path: Path, fmt: str) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        path, format=fmt
    )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _bomb_png(path: Path, width: int, height: int) -> Path:
    """A valid PNG header claiming a huge image (no pixel data needed to be refused)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def images(tmp_path: Path) -> Path:
    root = tmp_path / "img"
    root.mkdir()
    Image.new("RGB", (8, 8), "red").save(root / "ok.png")
    for mode in ("L", "LA", "P", "RGBA", "1"):
        Image.new(mode, (8, 8)).save(root / f"mode_{mode}.png")
    Image.new("CMYK", (8, 8)).save(root / "mode_CMYK.jpg")
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(root / "deep16.png")
    Image.new("RGB", (16, 16), "blue").save(root / "big.png")
    _truncated(root / "cut.png", "PNG")
    _truncated(root / "cut.jpg", "JPEG")
    (root / "not_an_image.png").write_bytes(b"plain text")
    _bomb_png(root / "bomb.png", 20000, 20000)
    return root


def _load(tmp_path: Path, rows, **kwargs):
    source = tmp_path / "train.jsonl"
    lines = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows]
    source.write_bytes(b"\n".join(lines) + b"\n")
    result = load_records(source, "llava_cot", tmp_path / "img", **kwargs)
    return result, {reject.record: reject for reject in result.rejects}


def test_malformed_and_non_utf8_lines_are_single_rejects(tmp_path: Path, images: Path) -> None:
    rows = [
        _record("a", "ok.png"),
        b'{"id": "b", "image": ',
        b'{"id": "c", "image": "ok.png", "conversations": "caf\xe9"}',
        _record("d", "ok.png"),
    ]
    result, rejects = _load(tmp_path, rows)
    assert [r.id for r in result.records] == ["a", "d"]
    assert (rejects[2].field, rejects[2].reason.split(":")[0]) == ("record", "invalid JSON")
    assert rejects[3].field == "record"
    assert rejects[3].reason.startswith("not UTF-8 text: invalid continuation byte at byte")
    assert result.summary()["rejected"] == 2 and result.read == 4


def test_a_non_utf8_sharegpt_file_names_the_file_and_byte(tmp_path: Path) -> None:
    source = tmp_path / "data.json"
    source.write_bytes(b'[{"conversations": "caf\xe9"}]')
    with pytest.raises(SourceDataError, match=r"data\.json: not UTF-8 text: .* at byte 23"):
        load_records(source, "sharegpt", tmp_path)


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        ("missing.png", "file not found: "),
        ("cut.png", "cannot open image "),
        ("cut.jpg", "cannot open image "),
        ("not_an_image.png", "cannot open image "),
        ("deep16.png", "16-bit or wider image (mode I;16): convert it to 8 bits per channel"),
        ("bomb.png", "image too large: "),
    ],
)
def test_unusable_images_are_rejected_with_their_reason(
    tmp_path: Path, images: Path, image: str, reason: str
) -> None:
    result, rejects = _load(tmp_path, [_record("ok", "ok.png"), _record("bad", image)])
    assert [r.id for r in result.records] == ["ok"]
    assert (rejects[2].id, rejects[2].field) == ("bad", "image")
    assert rejects[2].reason.startswith(reason), rejects[2].reason


def test_images_above_the_pixel_limit_are_rejected(tmp_path: Path, images: Path) -> None:
    result, rejects = _load(
        tmp_path, [_record("small", "ok.png"), _record("big", "big.png")], max_image_pixels=100
    )
    assert [r.id for r in result.records] == ["small"]  # 8 x 8 = 64 pixels
    assert rejects[2].reason.startswith(
        "image too large: 16x16 = 256 pixels, more than the limit of 100"
    )


def test_eight_bit_modes_other_than_rgb_are_kept(tmp_path: Path, images: Path) -> None:
    names = ["mode_L.png", "mode_LA.png", "mode_P.png", "mode_RGBA.png", "mode_1.png"]
    rows = [_record(name, name) for name in [*names, "mode_CMYK.jpg"]]
    result, rejects = _load(tmp_path, rows)
    assert rejects == {} and len(result.records) == 6


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (ANSWER.replace("<CAPTION>A red circle.</CAPTION>", ""), "missing <CAPTION>"),
        (
            "<CAPTION>A red circle.</CAPTION><SUMMARY>Find the colour.</SUMMARY>"
            "<REASONING>The circle is red.</REASONING><CONCLUSION>red</CONCLUSION>",
            "missing <CAPTION>",
        ),
        ("", "missing <SUMMARY>"),
    ],
    ids=["missing-stage", "out-of-order", "empty"],
)
def test_answers_not_in_the_four_stages_are_rejected(
    tmp_path: Path, images: Path, answer: str, problem: str
) -> None:
    result, rejects = _load(tmp_path, [_record("x", "ok.png", answer)])
    assert result.records == []
    assert rejects[1].field == "conversations[-1].value"
    assert rejects[1].reason.startswith(f"answer not in four-stage format: {problem}")


@pytest.mark.parametrize(
    ("turns", "field", "reason"),
    [
        ([("human", "q"), ("robot", ANSWER)], "conversations[1].from", "unknown role 'robot'"),
        ([("human", "q"), ("human", "q2"), ("gpt", ANSWER)], "conversations", "roles must"),
        ([("human", "q"), ("gpt", ANSWER), ("human", "q2")], "conversations", "roles must"),
    ],
    ids=["unknown-role", "human-human", "ends-on-human"],
)
def test_wrong_or_non_alternating_roles_are_rejected(
    tmp_path: Path, images: Path, turns, field: str, reason: str
) -> None:
    conversations = [{"from": role, "value": value} for role, value in turns]
    result, rejects = _load(tmp_path, [_record("x", "ok.png", turns=conversations)])
    assert result.records == []
    assert rejects[1].field == field and rejects[1].reason.startswith(reason)


def test_duplicate_ids_keep_the_first_and_reject_the_rest(tmp_path: Path, images: Path) -> None:
    result, rejects = _load(tmp_path, [_record("x", "ok.png")] * 3)
    assert [r.id for r in result.records] == ["x"]
    assert [(n, r.field, r.reason) for n, r in sorted(rejects.items())] == [
        (2, "id", "duplicate id"),
        (3, "id", "duplicate id"),
    ]
    sharegpt = tmp_path / "data.json"
    row = {"id": "y", "conversations": _record("y", "")["conversations"], "images": ["ok.png"]}
    sharegpt.write_text(json.dumps([row, row]))
    shared = load_records(sharegpt, "sharegpt", images)
    assert len(shared.records) == 1
    assert [(r.record, r.field, r.reason) for r in shared.rejects] == [(1, "id", "duplicate id")]


# -- preference records ---------------------------------------------------------------------------
def _pref(**changes) -> dict:
    row = {
        "id": "p1",
        "conversations": [{"from": "human", "value": "<image>What colour?"}],
        "chosen": {"from": "gpt", "value": ANSWER},
        "rejected": {"from": "gpt", "value": "<SUMMARY>Find the colour.</SUMMARY>junk"},
        "prefix": "<SUMMARY>Find the colour.</SUMMARY>",
        "prefix_l": "<SUMMARY>Find the colour.</SUMMARY>",
        "weights": 0.8,
        "truncation": 1,
        "noise_level": 0.2,
        "images": ["ok.png"],
    }
    row.update(changes)
    return row


def _load_prefs(tmp_path: Path, rows_text: str):
    path = tmp_path / "prefs.json"
    path.write_text(rows_text)
    return load_preferences(path)


def test_a_response_not_starting_with_its_prefix_is_refused(tmp_path: Path) -> None:
    text = json.dumps([_pref(), _pref(id="p2", prefix="<SUMMARY>Other.</SUMMARY>")])
    with pytest.raises(
        PreferenceDataError,
        match=r"prefs\.json: record 1 \(id p2\): prefix: chosen does not start with its prefix",
    ):
        _load_prefs(tmp_path, text)
    with pytest.raises(PreferenceDataError, match=r"prefix_l: rejected does not start"):
        _load_prefs(tmp_path, json.dumps([_pref(prefix_l="<CAPTION>")]))


@pytest.mark.parametrize(
    ("literal", "reason"),
    [
        ("NaN", "not a finite number: nan"),
        ("Infinity", "not a finite number: inf"),
        ("-0.5", "must be > 0, got -0.5"),
        ("0", "must be > 0, got 0"),
        ('"heavy"', "not a number: 'heavy'"),
    ],
)
def test_bad_weights_are_refused_naming_the_record(
    tmp_path: Path, literal: str, reason: str
) -> None:
    text = json.dumps([_pref(), _pref(id="p2", weights="SLOT")]).replace('"SLOT"', literal)
    with pytest.raises(PreferenceDataError) as error:
        _load_prefs(tmp_path, text)
    assert str(error.value).endswith(f"record 1 (id p2): weights: {reason}")


def test_one_image_as_a_string_reads_as_a_one_image_list(tmp_path: Path) -> None:
    """As the reference scripts' offline and online generators write it."""
    examples = _load_prefs(tmp_path, json.dumps([_pref(), _pref(id="p2", images="ok.png")]))
    assert examples[0].image == examples[1].image
    for bad in ([], ["a.png", "b.png"], "", 3):
        with pytest.raises(PreferenceDataError, match=r"record 0 \(id p1\): images: expected one"):
            _load_prefs(tmp_path, json.dumps([_pref(images=bad)]))


def test_missing_weights_are_accepted_as_no_weight(tmp_path: Path) -> None:
    row = _pref()
    del row["weights"]
    examples = _load_prefs(
        tmp_path, json.dumps([row, _pref(id="p2", weights=None), _pref(id="p3")])
    )
    assert [example.weight for example in examples] == [None, None, 0.8]


@pytest.mark.parametrize(
    ("field", "literal", "reason"),
    [
        ("noise_level", "NaN", "not a finite number: nan"),
        ("noise_level", "-0.1", "must be >= 0, got -0.1"),
        ("truncation", "-1", "must be >= 0, got -1"),
        ("truncation", "1.5", "not an integer: 1.5"),
    ],
)
def test_bad_noise_levels_and_truncation_points_are_refused(
    tmp_path: Path, field: str, literal: str, reason: str
) -> None:
    text = json.dumps([_pref(**{field: "SLOT"})]).replace('"SLOT"', literal)
    with pytest.raises(PreferenceDataError) as error:
        _load_prefs(tmp_path, text)
    assert str(error.value).endswith(f"record 0 (id p1): {field}: {reason}")


# -- benchmarks -----------------------------------------------------------------------------------
def test_benchmark_lines_with_bad_text_or_images_are_all_listed(
    tmp_path: Path, images: Path
) -> None:
    path = tmp_path / "bench.jsonl"
    good = {"image": "img/ok.png", "question": "What colour?", "answer": "red"}
    path.write_bytes(
        json.dumps(good).encode()
        + b'\n{"image": "img/ok.png", "question": "caf\xe9", "answer": "x"}\n'
        + json.dumps({**good, "image": "img/cut.jpg"}).encode()
        + b"\n"
        + json.dumps({**good, "image": "img/deep16.png"}).encode()
        + b"\n"
    )
    with pytest.raises(BenchmarkError) as error:
        read_benchmark(path)
    message = str(error.value)
    assert message.startswith("3 invalid benchmark record(s):")
    assert f"{path}, line 2: not UTF-8 text" in message
    assert f"{path}, line 3, field 'image': cannot open image" in message
    assert f"{path}, line 4, field 'image': 16-bit or wider image (mode I;16)" in message


# -- configuration --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c: c["generation"].update(max_new_token=10),
            r"generation\.max_new_token: unknown key",
        ),
        (lambda c: c["splits"].update(d_a="many"), r"splits\.d_a: 'many' is not of type 'integer'"),
        (
            lambda c: c["perturbation"]["reference"].update(noise_high=1.5),
            r"perturbation\.reference\.noise_high: 1\.5 is greater than the maximum of 1",
        ),
        (
            lambda c: c["checkpointing"].update(save_steps=0),
            r"checkpointing\.save_steps: 0 is less",
        ),
        (
            lambda c: c["generation"].update(chunk_size=48),
            r"generation\.chunk_size: 48 is not a multiple of generation\.batch_size \(32\)",
        ),
    ],
    ids=["unknown-key", "wrong-type", "out-of-range", "out-of-range-int", "cross-field"],
)
def test_bad_config_values_are_named_before_any_job(change, message: str) -> None:
    config = copy.deepcopy(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    change(config)
    with pytest.raises(ConfigError, match=message):
        validate_config(config, ROOT / "config" / "schema.yaml")
