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
