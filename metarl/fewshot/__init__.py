"""Supervised few-shot learning: sinusoid regression and Omniglot classification.

Modules: ``config`` (the run's validated config), ``problems`` (the two task families behind
one interface), ``problem_factory`` (the problem a config names), ``learners`` (one training
iteration per learner), ``run`` (the few-shot run on the shared loop of ``metarl.run``),
``evaluation`` (`metarl eval`), ``sinusoid`` / ``models`` / ``supervised`` (the sinusoid
tasks, the MLP, its initial parameters and the pretrained baseline's mixture loss),
``omniglot`` (loader, split and task sampler), ``conv`` (the 4-block network), ``protonet``
(prototype logits), ``omniglot_training`` (the 4-block network's losses and accuracy), and
``cell_space`` / ``cell_network`` / ``cell_problem`` (the networks of cells that ``metarl
search`` finds, and Omniglot with such a network).

Nothing is imported here, so that the command line can read a few-shot config without
importing torch.
"""
