"""facelift: FaceLift-style single-image 3D reconstruction (MVDiffusion + GS-LRM) on Lightning + Hydra."""

import os

# PyTorch's CPU thread pool is OpenMP, whose idle threads by default spin, waiting for the next parallel region.
# With the machine to itself that costs nothing; with one other busy process on a 2-core machine the spinning threads
# and the busy one take turns on the cores, and every parallel op waits for a descheduled thread: a 30-step CPU run
# measured 14x and writing the synthetic set 50x slower (scripts/bench_cpu_load.py). PASSIVE threads sleep instead;
# idle speed is unchanged. libgomp reads this once, when torch loads it, so it must be set before torch is imported
# (the entry points import facelift first); a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
