import pytest


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny networks run fastest single-threaded (and do not stall on a busy 2-core machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
