"""metarl: meta-reinforcement learning on PyTorch and Gymnasium.

The model-agnostic meta-learning family (MAML, Finn et al. 2017, arXiv:1703.03400) for
reinforcement learning, with its task-distribution environments in `metarl.envs`.
"""

import os

# Intel MKL's strict conditional numerical reproducibility: matrix products whose results do not
# depend on the operands' memory alignment or the thread count. A task's slice of a batched
# tensor sits at an offset that depends on how many tasks share the batch, so without it the same
# task's numbers differ in the last bit between one local batch and a Ray worker's shard (and
# chaotic simulators amplify that). MKL reads this once, at its first call; a value set by the
# user is kept. Other BLAS libraries ignore it.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

__version__ = "0.1.0"

__all__ = ["__version__"]
