"""Auto-Meta (Kim et al. 2018, arXiv:1806.06927): progressive architecture search (PNAS, Liu et
al. 2018, arXiv:1712.00559) for a meta-learner trained with Reptile on few-shot Omniglot.

Modules: ``space`` (cells, their strings, enumeration and expansion), ``network`` (stacked cells
as a pure function of a parameter dict), ``surrogate`` (the MLP ensemble that ranks expansions),
``config`` (the search's validated config) and ``search`` (the resumable driver).
"""
