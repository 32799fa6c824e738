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
