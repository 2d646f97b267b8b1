"""The two ways generation can fail: an expected rejection, or a bug."""


class Reject(Exception):
    """A sampled choice does not fit its constraints; the caller resamples.

    Rejections are part of normal sampling (no compatible operand, a shape too large, a
    program that does not lower) and are counted in statistics, never emitted as rows.
    """


class GeneratorBug(RuntimeError):
    """Something that should be impossible happened; generation must stop loudly."""
