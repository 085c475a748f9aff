"""Data statistics of a run for the report: records in and out of every data-building step (what
was filtered and why), perturbation histograms and online acceptance rates."""

import argparse
import json
import re

import yaml

from sherlock.data.sharegpt import read_json
from sherlock.report.data_flow import stage_table
from sherlock.report.figures import acceptance_rates, perturbation_histograms
from sherlock.report.html_table import write_table_page
from sherlock.runtime.atomic import atomic_output
from sherlock.runtime.step_summary import stage_summary


def _iteration(path: str) -> int:
    match = re.search(r"iter(\d+)", path)
    if match is None:
        raise ValueError(f"{path}: no iteration number (iter<k>) in the path")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source-summary", required=True)
    parser.add_argument("--splits", nargs="+", required=True, help="D_A.json D_B.json pool_k.json")
    parser.add_argument("--sherlock-sft", required=True)
    parser.add_argument("--offline-source", required=True, help="the split offline pairs continue")
    parser.add_argument("--offline-pairs", required=True)
    parser.add_argument("--chosen-summaries", nargs="*", default=[])
    parser.add_argument("--online-pairs", nargs="*", default=[])
    parser.add_argument("--table-html", required=True)
    parser.add_argument("--table-csv", required=True)
    parser.add_argument("--perturbations", required=True, help="PNG")
    parser.add_argument("--acceptance", required=True, help="PNG")
    args = parser.parse_args()

    with open(args.source_summary, encoding="utf-8") as handle:
        source = json.load(handle)
    splits = {
        re.sub(r"\.json$", "", path.rsplit("/", 1)[-1]): len(read_json(path))
        for path in args.splits
    }
    offline_pairs = read_json(args.offline_pairs)
    online = {}
    for path in args.chosen_summaries:
        with open(path, encoding="utf-8") as handle:
            online.setdefault(_iteration(path), {})["chosen_summary"] = yaml.safe_load(handle)
    for path in args.online_pairs:
        online.setdefault(_iteration(path), {})["pairs"] = read_json(path)
    table = stage_table(
        source,
        splits,
        len(read_json(args.sherlock_sft)),
        len(read_json(args.offline_source)),
        offline_pairs,
        online,
    )
    with atomic_output(args.table_csv) as csv:
        table.to_csv(csv, index=False)
    write_table_page(
        table,
        args.table_html,
        "Records in and out of each step",
        "Every record a step did not pass on is counted here with its reason.",
        index=False,
    )
    pairs = {"offline": offline_pairs}
    pairs.update({f"iter{k}": online[k]["pairs"] for k in sorted(online)})
    perturbation_histograms(pairs, args.perturbations)
    acceptance_rates(
        {f"iter{k}": online[k]["chosen_summary"] for k in sorted(online)}, args.acceptance
    )
    stage_summary("data report", f"{len(table)} steps; preference files: {', '.join(pairs)}")


if __name__ == "__main__":
    main()
