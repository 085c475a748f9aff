"""Records in and out of every data-building step of a run, with what was filtered and why."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

STAGE_COLUMNS = ("stage", "step", "records_in", "records_out", "details")


def _counts(values: Sequence[Any]) -> str:
    return ", ".join(f"{key}: {count}" for key, count in sorted(Counter(values).items()))


def pair_row(stage: str, step: str, records_in: int, pairs: Sequence[Mapping[str, Any]]) -> dict:
    """A preference file: how many pairs, at which truncation points, how noisy."""
    noise = [row["noise_level"] for row in pairs]
    details = f"truncation points {{{_counts([row['truncation'] for row in pairs])}}}"
    if noise:
        details += f"; noise level ε mean {sum(noise) / len(noise):.3f}"
    return {
        "stage": stage,
        "step": step,
        "records_in": records_in,
        "records_out": len(pairs),
        "details": details,
    }


def stage_table(
    source_summary: Mapping[str, Any],
    split_sizes: Mapping[str, int],
    sherlock_sft_rows: int,
    offline_source_records: int,
    offline_pairs: Sequence[Mapping[str, Any]],
    online: Mapping[int, Mapping[str, Any]],
) -> pd.DataFrame:
    """One row per step; ``online[k]`` has ``chosen_summary`` (dict) and ``pairs`` (rows)."""
    reasons = source_summary.get("reject_reasons") or {}
    rows = [
        {
            "stage": "source",
            "step": "validate the source records",
            "records_in": source_summary["read"],
            "records_out": source_summary["valid"],
            "details": (
                f"rejected {source_summary['rejected']}"
                + (f" ({', '.join(f'{r}: {n}' for r, n in reasons.items())})" if reasons else "")
            ),
        },
        {
            "stage": "splits",
            "step": "D_A, D_B and the online pools",
            "records_in": source_summary["valid"],
            "records_out": sum(split_sizes.values()),
            "details": ", ".join(f"{name} {size}" for name, size in split_sizes.items()),
        },
        {
            "stage": "I (SFT)",
            "step": "sherlock_sft.json from R0's answers to D_B",
            "records_in": split_sizes.get("D_B", 0),
            "records_out": sherlock_sft_rows,
            "details": "a direct row and a correction row per D_B record",
        },
        pair_row("II (offline)", "offline preference pairs", offline_source_records, offline_pairs),
    ]
    for k, iteration in sorted(online.items()):
        chosen = iteration["chosen_summary"]
        not_kept = chosen.get("not_kept") or {}
        rows.append(
            {
                "stage": f"III (iter{k})",
                "step": f"chosen: self-consistent turns ({chosen.get('judge', '?')} judge)",
                "records_in": chosen["candidates"],
                "records_out": chosen["kept"],
                "details": f"acceptance {chosen['acceptance_rate']:.1%}"
                + (f"; not kept: {', '.join(f'{r}: {n}' for r, n in not_kept.items())}"),
            }
        )
        rows.append(
            pair_row(
                f"III (iter{k})", "rejected: preference pairs", chosen["kept"], iteration["pairs"]
            )
        )
    return pd.DataFrame(rows, columns=list(STAGE_COLUMNS))
