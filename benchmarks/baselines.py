"""Measure the evaluate baselines on staged test splits and write ``dataset_card/baselines.json``
(the card shows it for this version).

    python -m generator stage --configs balanced --train-size 2300 --validation-size 230 --views none --output-dir staged-balanced
    python -m generator stage --configs models --train-size 600 --validation-size 60 --views none --output-dir staged-models
    python benchmarks/baselines.py --staged balanced=staged-balanced --staged models=staged-models

Every task (forward, reverse, cost) is scored for every baseline (reference, nearest, copy), as
``python -m generator evaluate --task T --baseline B --staged D --config C --split test`` does.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from generator.tools.evaluate import BASELINES, baseline_predictions, evaluate
from generator.tools.evaluate.data import load_split
from generator.tools.hub.card import BASELINES as OUTPUT
from generator.version import __version__

TASKS = ("forward", "reverse", "cost")
NOTE = (
    "`reference` answers with the reference itself (a check of the scorer: every layer 100%); `nearest` with the "
    "answer of the train row whose prompt text is most alike (TF-IDF cosine); `copy` with the prompt's text. "
    "`agrees` counts only the rows under its cost cap (op-table rows; real-sized model rows are over it), and "
    "`cost` only rows with cost figures. A fine-tuned model should beat `nearest` on every layer."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--staged", action="append", required=True, metavar="CONFIG=FOLDER")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    reports, measured = [], []
    for item in args.staged:
        config, _, folder = item.partition("=")
        test = load_split(folder, config, "test")
        train = load_split(folder, config, "train")
        measured.append(f"`{config}` ({len(test)} test rows; {len(train)} train rows)")
        for task in TASKS:
            for baseline in BASELINES:
                predictions = baseline_predictions(baseline, task, folder, config)
                report = evaluate(
                    task, predictions, folder, config, execute_predictions=True, workers=args.workers, answers=False
                )
                reports.append({"config": config, "task": task, "baseline": baseline, "report": report})
                layers = ", ".join(f"{k} {v['rate']:.1%}" for k, v in report["layers"].items())
                print(f"{config} {task} {baseline}: {layers} ({report['seconds']:.0f} s)", flush=True)
    out = {
        "version": __version__,
        "measured_on": "the test splits of " + " and ".join(measured) + ", staged with seed 0",
        "command": "python -m generator evaluate --task <task> --baseline <baseline> --staged <folder> --config <config> --split test [--execute-predictions]",
        "note": NOTE,
        "reports": reports,
    }
    args.output.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
