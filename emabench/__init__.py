"""emabench: does weight averaging (EMA, Polyak, SWA) help your training, and with which settings?"""

import os

__version__ = "0.1.0"

# MKL's conditional numerical reproducibility (read once, at MKL's first call, so set before any product is taken):
# without it MKL picks a matrix product's code path by the address and place of each matrix in a batch, and a run
# would round differently alone than in a stack of runs (measured: every odd replica of a batched product differed).
# With it, a replica's products are the same bits at any stack size and position. A value the user set is kept.
os.environ.setdefault("MKL_CBWR", "AUTO")
