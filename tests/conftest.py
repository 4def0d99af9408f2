"""Settings every test shares.

One intra-op thread per process: the suite must stay within 4 CPU-minutes on 2 shared cores,
and a second OpenMP thread on a busy core spins (and bills CPU time) while it waits for the
first. Results do not depend on it: no test compares a float32 value computed with another
thread count, and the tests that check thread-independence set their own counts.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported by any test module

import torch  # noqa: E402

torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread_after_each_test():
    """A test (or the code it runs) that sets its own thread count must not leave it to the rest:
    one leaked `set_num_threads(2)` made every later test several times slower on a busy machine."""
    yield
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
