import sys
from pathlib import Path

import pytest
import torch

# tests/reference/ (the slow, obviously correct oracles) is imported as `reference`
sys.path.insert(0, str(Path(__file__).resolve().parent))

torch.set_default_dtype(torch.float64)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The tests run latency-bound loops over small tensors: one intra-op thread is as fast
    on an idle machine and avoids OpenMP oversubscription stalls when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
