"""Token counts: how long a text is for a language model, offline.

The tokenizer is Mistral's Tekken (``tekken_240911.json``, the tokenizer of Mistral NeMo,
Pixtral and Ministral), whose vocabulary ships inside the ``mistral-common`` wheel, so counts
need no download. A count is of the text alone: no BOS/EOS or chat-template tokens, which
depend on the model trained. Another model's tokenizer gives other counts (code tokenizers
are within tens of percent of each other on this text); the budget a view keeps
(``max_tokens``) is in these tokens.
"""

from __future__ import annotations

import functools
from importlib import resources
from importlib.metadata import version

TOKENIZER_FILE = "tekken_240911.json"
TOKENIZER_PACKAGE = "mistral-common"
TOKENIZER_NAME = f"Tekken ({TOKENIZER_FILE}, {TOKENIZER_PACKAGE})"


def tokenizer_version() -> str:
    """The tokenizer as the card and stats name it: file and package version."""
    return f"{TOKENIZER_FILE} from {TOKENIZER_PACKAGE} {version(TOKENIZER_PACKAGE)}"


@functools.cache
def _encoding():
    """The tiktoken encoding inside Tekken (loaded once per process, about 1.5 s)."""
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer

    path = resources.files("mistral_common") / "data" / TOKENIZER_FILE
    with resources.as_file(path) as file:
        return Tekkenizer.from_file(file)._model  # counts only: ids are not needed


def preload() -> None:
    """Load the tokenizer now (before forking workers, so that they inherit it)."""
    _encoding()


def count_tokens(text: str) -> int:
    """Tekken tokens of ``text`` (ordinary text: special-token strings count as text)."""
    return len(_encoding().encode_ordinary(text))
