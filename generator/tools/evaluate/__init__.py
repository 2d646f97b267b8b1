"""The benchmark scorer: ``evaluate`` scores predictions for a task view against a staged split.

    from generator.tools.evaluate import evaluate, baseline_predictions
    report = evaluate("forward", "predictions.jsonl", "staged", "balanced", "test")

Predictions are untrusted: text layers run nothing (parsing happens in a worker process, where
a parser crash costs one answer); compiling predicted StableHLO/HLO and running predicted
Python happen in limited worker processes (``pool.Limits``), which are not a security sandbox.
"""

from .baselines import BASELINES, baseline_predictions
from .data import load_split, read_predictions, write_predictions
from .pool import Limits
from .scoring import CAP_BYTES, CAP_FLOPS, CAP_RULE, TASKS, RefusedError, evaluate, format_report, pass_at_k

__all__ = [
    "BASELINES",
    "CAP_BYTES",
    "CAP_FLOPS",
    "CAP_RULE",
    "TASKS",
    "Limits",
    "RefusedError",
    "baseline_predictions",
    "evaluate",
    "format_report",
    "load_split",
    "pass_at_k",
    "read_predictions",
    "write_predictions",
]
