"""Fine-tune a small causal LM on one task view of jax-stablehlo-pairs with TRL's ``SFTTrainer``.

    python examples/sft_trl.py --dataset staged --config balanced-forward --max-steps 200
    python examples/sft_trl.py --dataset staged --config balanced-conversational --dry-run

The views are in TRL's own formats, so ``SFTTrainer`` takes them as they are: prompt-completion
(forward, reverse, optimize, cost; TRL's loss is on the completion by default) and conversational
(``messages``; the loss is put on the assistant turn here). TRL drops the other columns.

A row is never truncated: rows over --max-length are dropped, first by the dataset's Tekken
counts, then by the trained model's own tokenizer (its counts differ), so SFTConfig's
``max_length``, which would cut a longer row, has nothing left to cut.
After training, the model answers every prompt of the test split (greedy decoding), the answers
are written to ``<output-dir>/answers-test.jsonl``, and the benchmark scorer (``python -m
generator evaluate``) scores them against the pairs, layer by layer. The scorer runs in the
project's venv (``--scorer-python``; the training venv has TRL's newer ``datasets``) and reads a
local staged folder (``--dataset``). ``--dry-run`` prints
the first row and a token summary without importing torch, transformers or trl, then scores a
baseline's answers (``--dry-run-answers``: the reference itself, or the prompt copied) in place
of the model's, so the whole pipeline runs without a model download.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import datasets

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = "jax-stablehlo-pairs/jax-stablehlo-pairs"
DEFAULT_MODEL = "Qwen/Qwen2.5-Coder-0.5B-Instruct"


def load_view(dataset: str, config: str, split: str) -> datasets.Dataset:
    """One split of a view config (``<pairs config>-<view>``), from the Hub or a local staged folder."""
    return datasets.load_dataset(dataset, config, split=split)


def total_tokens(ds: datasets.Dataset) -> list[int]:
    """Tekken tokens of each row: prompt + completion (user + assistant message)."""
    return [p + c for p, c in zip(ds["prompt_tokens"], ds["completion_tokens"])]


def within_budget(ds: datasets.Dataset, max_length: int) -> datasets.Dataset:
    """The rows whose Tekken tokens fit ``max_length``; longer rows are dropped, never truncated."""
    return ds.select([i for i, n in enumerate(total_tokens(ds)) if n <= max_length])


def summary(ds: datasets.Dataset, max_length: int) -> dict[str, float]:
    """Rows, median and max Tekken tokens of a row, and rows over ``max_length``."""
    n = total_tokens(ds)
    return {
        "rows": len(n),
        "median_tokens": statistics.median(n) if n else 0,
        "max_tokens": max(n, default=0),
        "over_max_length": sum(x > max_length for x in n),
    }


def _shown(value, limit: int = 400):
    """A value as printed: long strings abbreviated (the data is untouched)."""
    if isinstance(value, list):
        return [{k: _shown(v, limit) for k, v in m.items()} for m in value]
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + f"... [{len(value) - limit} more characters]"
    return value


def _dropped(split: str, before: int, after: int, max_length: int, counted_by: str) -> None:
    if after < before:  # a row over the budget is left out whole, never truncated
        print(f"{split}: dropped {before - after} of {before} rows over {max_length} {counted_by} tokens")
    if split == "train" and not after:
        raise SystemExit(f"no train row fits --max-length {max_length}")


def train(args, splits: dict[str, datasets.Dataset]) -> None:
    """Fine-tune ``args.model`` on the view with TRL (imported here: the dry run needs none of it)."""
    from transformers import AutoTokenizer
    from transformers.utils import is_torch_bf16_gpu_available
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(args.model)

    def model_tokens(row) -> int:  # as SFTTrainer tokenizes a row (it appends EOS to a completion)
        if "messages" in row:
            return len(tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True)["input_ids"])
        return len(tokenizer(row["prompt"] + row["completion"])["input_ids"]) + 1

    for split, ds in splits.items():
        splits[split] = ds.filter(lambda row: model_tokens(row) <= args.max_length)
        _dropped(split, len(ds), len(splits[split]), args.max_length, args.model)

    config = SFTConfig(
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        max_length=args.max_length,  # every row fits already: TRL truncates nothing
        # prompt-completion views: completion_only_loss=None already means loss on the completion only
        assistant_only_loss="messages" in splits["train"].column_names,
        per_device_train_batch_size=1,  # rows are up to --max-length tokens long
        per_device_eval_batch_size=1,
        gradient_accumulation_steps=8,
        bf16=is_torch_bf16_gpu_available(),  # TRL defaults to bf16, which fails on a CPU
        report_to="none",
    )
    eval_ds = splits["validation"] if len(splits["validation"]) else None
    trainer = SFTTrainer(
        args.model, config, train_dataset=splits["train"], eval_dataset=eval_ds, processing_class=tokenizer
    )
    trainer.train()
    if eval_ds is not None:
        print(trainer.evaluate())
    trainer.save_model()


# The scorer's task for each view (the conversational view is the forward task as chat messages).
TASK_OF_VIEW = {
    "forward": "forward",
    "conversational": "forward",
    "reverse": "reverse",
    "cost": "cost",
    "optimize": "optimize",
}


def task_of(config: str) -> tuple[str, str]:
    """A view config's pairs config and the scorer's task: ``balanced-forward`` -> (``balanced``, ``forward``)."""
    pairs, _, view = config.rpartition("-")
    if view not in TASK_OF_VIEW or not pairs:
        raise SystemExit(f"--config {config!r} is not a view config; valid views: {', '.join(TASK_OF_VIEW)}")
    return pairs, TASK_OF_VIEW[view]


def generate_answers(model_dir: str, ds: datasets.Dataset, max_new_tokens: int) -> list[dict[str, str]]:
    """The fine-tuned model's answer to every prompt of ``ds`` (greedy), as the scorer's predictions."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.eval()
    out = []
    for row in ds:
        if "messages" in row:  # as trained: the chat template, then the assistant's turn
            text = tokenizer.apply_chat_template(row["messages"][:1], tokenize=False, add_generation_prompt=True)
        else:
            text = row["prompt"]
        inputs = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        answer = tokenizer.decode(ids[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        out.append({"id": row["id"], "prediction": answer})
    return out


def default_scorer_python() -> str:
    """The project's interpreter (``make install``'s ``.venv``), which has the scorer and its pinned
    libraries; the training venv has TRL's newer ``datasets`` instead. Else this one."""
    project = ROOT / ".venv" / "bin" / "python"
    return str(project) if project.exists() else sys.executable


def score_answers(args, *, answers: str | None = None, baseline: str | None = None) -> int:
    """Score answers (a JSONL file, or a baseline's) with the benchmark scorer, in the project's venv:
    ``python -m generator evaluate`` against the pairs of the staged folder ``--dataset``."""
    pairs, task = task_of(args.config)
    command = [args.scorer_python, "-m", "generator", "evaluate", "--task", task, "--staged", args.dataset]
    command += ["--config", pairs, "--split", args.eval_split, "--workers", str(args.workers)]
    command += ["--predictions", answers] if answers else ["--baseline", baseline]
    if args.execute_predictions:
        command.append("--execute-predictions")
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    print(done.stdout, end="")
    if done.returncode:
        print(done.stderr[-4000:], file=sys.stderr)
    return done.returncode


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="Hub repo id or local staged folder")
    parser.add_argument("--config", default="balanced-forward", help="a view config: <pairs config>-<view>")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--max-length", type=int, default=16384, help="tokens per row; longer rows are dropped")
    parser.add_argument("--output-dir", default="sft-output")
    parser.add_argument("--max-steps", type=int, default=-1, help="optimizer steps (-1: one epoch)")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the first row and a summary, then score a baseline's answers"
    )
    parser.add_argument("--eval-split", default="test", help="the split the model answers and is scored on")
    parser.add_argument("--max-new-tokens", type=int, default=4096, help="tokens per generated answer")
    parser.add_argument(
        "--dry-run-answers",
        choices=("reference", "copy"),
        default="reference",
        help="with --dry-run: whose answers are scored in place of the model's",
    )
    parser.add_argument(
        "--execute-predictions", action="store_true", help="let the scorer run predicted Python (reverse views)"
    )
    parser.add_argument("--workers", type=int, default=2, help="the scorer's worker processes")
    parser.add_argument(
        "--scorer-python",
        default=default_scorer_python(),
        help="the interpreter that runs the scorer (default: the project's .venv, else this one)",
    )
    args = parser.parse_args(argv)
    local = os.path.isdir(args.dataset)  # the scorer reads a staged folder (python -m generator stage)

    splits = {split: load_view(args.dataset, args.config, split) for split in ("train", "validation")}
    if args.dry_run:
        for key, value in splits["train"][0].items():
            print(f"{key}: {_shown(value)!r}")
        for split, ds in splits.items():
            print(f"{split} (Tekken tokens): {summary(ds, args.max_length)}")
        if local:  # the last step, with a baseline's answers standing in for the model's
            pairs, task = task_of(args.config)
            print(f"scoring the {args.dry_run_answers} baseline's answers on {pairs}/{args.eval_split} ({task}):")
            score_answers(args, baseline=args.dry_run_answers)
        return
    for split, ds in splits.items():
        splits[split] = within_budget(ds, args.max_length)
        _dropped(split, len(ds), len(splits[split]), args.max_length, "Tekken")
    train(args, splits)
    if not local:
        print("to score the model, stage the dataset locally (python -m generator stage) and pass it as --dataset")
        return
    answers = generate_answers(
        args.output_dir, load_view(args.dataset, args.config, args.eval_split), args.max_new_tokens
    )
    path = Path(args.output_dir) / f"answers-{args.eval_split}.jsonl"
    path.write_text("".join(json.dumps(a) + "\n" for a in answers))
    print(f"wrote {len(answers)} answers to {path}; scoring them:")
    score_answers(args, answers=str(path))


if __name__ == "__main__":
    main()
