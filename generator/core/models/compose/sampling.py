"""How serving code chooses the next token from a language model's logits: greedy, temperature,
top-k (by ``lax.top_k`` then a choice among the k, or by masking below the k-th logit), top-p
(nucleus) and min-p sampling, with an optional repetition penalty (CTRL's, multiplicative) and
presence and frequency penalties (OpenAI's, additive, from token counts). Each sampler is one
module-level function ``select_token`` over float32 logits ``(batch, vocab)``; a sampling
program alone is that function behind a jitted entry."""

from __future__ import annotations

SAMPLERS = ("greedy", "temperature", "top_k", "top_k_mask", "top_p", "min_p")
SAMPLER_DOCS = {
    "greedy": "greedy decoding",
    "temperature": "temperature sampling",
    "top_k": "top-k sampling",
    "top_k_mask": "top-k sampling (logits below the k-th masked)",
    "top_p": "nucleus (top-p) sampling",
    "min_p": "min-p sampling",
}

_SIGNATURE = "def select_token(logits: jax.Array, key: jax.Array, config) -> jax.Array:"
_CATEGORICAL = "    return jax.random.categorical(key, logits / config.temperature, axis=-1).astype(jnp.int32)\n"

SELECT = {
    "greedy": '''def select_token(logits: jax.Array) -> jax.Array:
    """The most likely token of each row of logits (batch, vocab)."""
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
''',
    "temperature": f'''{_SIGNATURE}
    """A token per row, drawn from softmax(logits / temperature)."""
{_CATEGORICAL}''',
    "top_k": f'''{_SIGNATURE}
    """A token per row, drawn from the top_k most likely ones (after temperature)."""
    top_logits, top_indices = lax.top_k(logits, config.top_k)
    choice = jax.random.categorical(key, top_logits / config.temperature, axis=-1)
    return jnp.take_along_axis(top_indices, choice[:, None], axis=-1)[:, 0].astype(jnp.int32)
''',
    "top_k_mask": f'''{_SIGNATURE}
    """A token per row, drawn after masking every logit below the top_k-th largest."""
    kth_largest = lax.top_k(logits, config.top_k)[0][:, -1:]
    logits = jnp.where(logits < kth_largest, jnp.finfo(logits.dtype).min, logits)
{_CATEGORICAL}''',
    "top_p": f'''{_SIGNATURE}
    """Nucleus sampling: a token per row from the smallest set of tokens whose probability reaches top_p."""
    sorted_logits = jnp.sort(logits, axis=-1, descending=True)
    probs = jax.nn.softmax(sorted_logits / config.temperature, axis=-1)
    # a token stays while the probability before it is below top_p (the most likely always does)
    kept = jnp.sum(jnp.cumsum(probs, axis=-1) - probs < config.top_p, axis=-1, keepdims=True)
    cutoff = jnp.take_along_axis(sorted_logits, kept - 1, axis=-1)
    logits = jnp.where(logits < cutoff, jnp.finfo(logits.dtype).min, logits)
{_CATEGORICAL}''',
    "min_p": f'''{_SIGNATURE}
    """Min-p sampling: a token per row among those at least min_p times as likely as the most likely."""
    scaled = logits / config.temperature
    # p < min_p * p_max, in log space: scaled < max(scaled) + log(min_p)
    threshold = jnp.max(scaled, axis=-1, keepdims=True) + jnp.log(config.min_p)
    scaled = jnp.where(scaled < threshold, jnp.finfo(scaled.dtype).min, scaled)
    return jax.random.categorical(key, scaled, axis=-1).astype(jnp.int32)
''',
}

REPETITION_PENALTY = '''def apply_repetition_penalty(logits: jax.Array, seen: jax.Array, penalty: float) -> jax.Array:
    """Penalizes the tokens a row has seen (CTRL): positive logits divided by the penalty, negative ones multiplied."""
    penalized = jnp.where(logits > 0, logits / penalty, logits * penalty)
    return jnp.where(seen, penalized, logits)
'''

SEEN_TOKENS = '''def seen_tokens(tokens: jax.Array, vocab_size: int) -> jax.Array:
    """(batch, vocab_size) booleans: the tokens each row of tokens (batch, length) holds."""
    rows = jnp.arange(tokens.shape[0])[:, None]
    return jnp.zeros((tokens.shape[0], vocab_size), jnp.bool_).at[rows, tokens].set(True)
'''


FREQUENCY_PENALTY = '''def apply_frequency_penalty(logits: jax.Array, counts: jax.Array, config) -> jax.Array:
    """Presence and frequency penalties: a seen token loses presence_penalty once and frequency_penalty per occurrence."""
    return logits - config.frequency_penalty * counts - config.presence_penalty * (counts > 0).astype(logits.dtype)
'''

TOKEN_COUNTS = '''def token_counts(tokens: jax.Array, vocab_size: int) -> jax.Array:
    """(batch, vocab_size) float32 counts of the tokens in each row of tokens (batch, length)."""
    rows = jnp.arange(tokens.shape[0])[:, None]
    return jnp.zeros((tokens.shape[0], vocab_size), jnp.float32).at[rows, tokens].add(1.0)
'''


def helpers(sampler: str, penalty: bool, frequency: bool = False) -> list[str]:
    """The module-level functions a program choosing tokens with ``sampler`` calls."""
    out = [REPETITION_PENALTY, SEEN_TOKENS] if penalty else []
    out += [FREQUENCY_PENALTY, TOKEN_COUNTS] if frequency else []
    return out + [SELECT[sampler]]


def choose(sampler: str, penalty: bool, key: str, frequency: bool = False) -> list[str]:
    """The lines that turn ``logits`` into ``next_token`` (``key``: the step's key); the penalties
    read ``seen`` and ``counts``."""
    lines = ["logits = apply_repetition_penalty(logits, seen, config.repetition_penalty)"] if penalty else []
    lines += ["logits = apply_frequency_penalty(logits, counts, config)"] if frequency else []
    call = "select_token(logits)" if sampler == "greedy" else f"select_token(logits, {key}, config)"
    return [*lines, f"next_token = {call}"]


def logprob_lines(token: str = "next_token") -> list[str]:
    """The log-probability of ``token`` under the unmodified ``logits`` (read before any penalty)."""
    return [f"token_logprob = jnp.take_along_axis(logprobs, {token}[:, None], axis=-1)[:, 0]"]
