"""Auto-Meta (Kim et al. 2018, arXiv:1806.06927): progressive architecture search (PNAS, Liu et
al. 2018, arXiv:1712.00559) for a meta-learner trained with Reptile on few-shot Omniglot.

Modules: ``config`` (the search's validated config), ``surrogate`` (the MLP ensemble that ranks
expansions), ``search`` (the search as a run of the shared loop: one candidate per iteration)
and ``retrain`` (the presets a finished search writes). The cells and their networks are
few-shot models and live in ``metarl.fewshot`` (``cell_space``, ``cell_network``,
``cell_problem``), below the search.
"""
