import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(ROOT / "jax_stablehlo_pairs.py")

# Builds run without a terminal and never touch the user's cache.
os.environ.setdefault("HF_DATASETS_TRUST_REMOTE_CODE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "hf-cache")


@pytest.fixture(scope="session")
def builder_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("jax_stablehlo_pairs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("jax_stablehlo_pairs", module)
    spec.loader.exec_module(module)
    return module
