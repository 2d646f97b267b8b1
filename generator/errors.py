"""The ways generation can fail: an expected rejection (resampled), or a bug (stops the build)."""


class Reject(Exception):
    """A sampled choice does not fit its constraints; the caller resamples.

    Rejections are part of normal sampling (no compatible operand, a shape too large, a
    program that does not lower) and are counted in statistics, never emitted as rows.
    """


class OtherShard(Reject):
    """A sampled program belongs to another shard's part of program space (``sampler.Partition``).

    Counted apart from other rejections: it measures the partition's cost, not the sampler's.
    """


class GeneratorBug(RuntimeError):
    """Something that should be impossible happened; generation must stop loudly."""


class BudgetTooSmall(ValueError):
    """A build's ``max_tokens`` is below what a category's programs need; the user must raise it."""
