"""graphscope's benchmark suite: ratios against torchviz and a minimal walker, side by side.

Run it with `python -m benchmarks.run` (see benchmarks/README.md). Importing the package
pins every math library to one thread before torch is imported, so timings are comparable.
"""

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
