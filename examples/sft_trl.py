"""Fine-tune a small causal LM on one task view of jax-stablehlo-pairs with TRL's ``SFTTrainer``.

    python examples/sft_trl.py --config balanced-forward --max-steps 200
    python examples/sft_trl.py --dataset staged --config balanced-conversational --dry-run

The views are in TRL's own formats, so ``SFTTrainer`` takes them as they are: prompt-completion
(forward, reverse, optimize, cost; TRL's loss is on the completion by default) and conversational
(``messages``; the loss is put on the assistant turn here). TRL drops the other columns.

A row is never truncated: rows over --max-length are dropped, first by the dataset's Tekken
counts, then by the trained model's own tokenizer (its counts differ), so SFTConfig's
``max_length``, which would cut a longer row, has nothing left to cut.
``--dry-run`` prints the first row and a token summary without importing torch, transformers or trl.
"""

import argparse
import statistics

import datasets

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="Hub repo id or local staged folder")
    parser.add_argument("--config", default="balanced-forward", help="a view config: <pairs config>-<view>")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--max-length", type=int, default=16384, help="tokens per row; longer rows are dropped")
    parser.add_argument("--output-dir", default="sft-output")
    parser.add_argument("--max-steps", type=int, default=-1, help="optimizer steps (-1: one epoch)")
    parser.add_argument("--dry-run", action="store_true", help="print the first row and a summary, then exit")
    args = parser.parse_args(argv)

    splits = {split: load_view(args.dataset, args.config, split) for split in ("train", "validation")}
    if args.dry_run:
        for key, value in splits["train"][0].items():
            print(f"{key}: {_shown(value)!r}")
        for split, ds in splits.items():
            print(f"{split} (Tekken tokens): {summary(ds, args.max_length)}")
        return
    for split, ds in splits.items():
        splits[split] = within_budget(ds, args.max_length)
        _dropped(split, len(ds), len(splits[split]), args.max_length, "Tekken")
    train(args, splits)


if __name__ == "__main__":
    main()
