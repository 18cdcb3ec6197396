"""metarl: meta-reinforcement learning on PyTorch and Gymnasium.

The model-agnostic meta-learning family (MAML, Finn et al. 2017, arXiv:1703.03400) for
reinforcement learning, with its task-distribution environments in `metarl.envs`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
