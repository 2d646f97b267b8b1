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


# The model families' real-size cases each lower a real model and run the validator on it
# (XLA and IREE, 5-15 s apiece): the first case of each family stays in the default run, the
# others run with the slow tests (make test-slow).
REAL_SIZE_CASES = ("test_lowers_at_real_size_and_passes_the_validator", "test_real_size_lowering_and_validator")


def pytest_collection_modifyitems(config, items):
    first_seen: set[str] = set()
    for item in items:
        name = getattr(item, "originalname", item.name)
        if name in REAL_SIZE_CASES and item.module.__name__.split(".")[-1].startswith("test_models_"):
            key = f"{item.module.__name__}::{name}"
            if key in first_seen:
                item.add_marker(pytest.mark.slow)
            first_seen.add(key)
