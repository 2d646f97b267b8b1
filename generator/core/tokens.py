"""Token counts: how long a text is for a language model, offline.

The tokenizer is Mistral's Tekken (``tekken_240911.json``, the tokenizer of Mistral NeMo,
Pixtral and Ministral), whose vocabulary ships inside the ``mistral-common`` wheel, so counts
need no download. A count is of the text alone: no BOS/EOS or chat-template tokens, which
depend on the model trained. Another model's tokenizer gives other counts (code tokenizers
are within tens of percent of each other on this text); the budget a view keeps
(``max_tokens``) is in these tokens.
"""

from __future__ import annotations

import base64
import functools
import json
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
    """The tiktoken encoding inside Tekken (loaded once per process, about 0.3 s).

    Built as ``Tekkenizer.__init__`` builds its ``_model``: the file's first
    ``default_vocab_size - default_num_special_tokens`` tokens as merge ranks, its pattern, no
    special tokens. ``Tekkenizer.from_file`` would also import mistral-common's tokenizer stack
    and decode every token for its vocabulary (1.0 s), which counting does not use; a test
    checks that both encodings are the same.
    """
    import tiktoken

    path = resources.files("mistral_common") / "data" / TOKENIZER_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    config = data["config"]
    inner_vocab_size = config["default_vocab_size"] - config["default_num_special_tokens"]
    ranks = {base64.b64decode(token["token_bytes"]): token["rank"] for token in data["vocab"][:inner_vocab_size]}
    return tiktoken.Encoding(
        name=TOKENIZER_FILE.removesuffix(".json"), pat_str=config["pattern"], mergeable_ranks=ranks, special_tokens={}
    )


def preload() -> None:
    """Load the tokenizer now (before forking workers, so that they inherit it)."""
    _encoding()


def count_tokens(text: str) -> int:
    """Tekken tokens of ``text`` (ordinary text: special-token strings count as text)."""
    return len(_encoding().encode_ordinary(text))
