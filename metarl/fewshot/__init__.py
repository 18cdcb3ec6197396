"""Supervised few-shot learning: sinusoid regression and Omniglot classification.

Modules: ``config`` (the run's validated config), ``problems`` (the two task families behind
one interface), ``learners`` (one training iteration per learner), ``run`` (the `metarl train`
loop), ``evaluation`` (`metarl eval`), ``sinusoid`` / ``models`` / ``supervised`` (the sinusoid
tasks, the MLP, its initial parameters and the pretrained baseline's mixture loss),
``omniglot`` (loader, split and task sampler), ``conv`` (the 4-block network), ``protonet``
(prototype logits) and ``omniglot_training`` (the 4-block network's losses and accuracy).

Nothing is imported here, so that the command line can read a few-shot config without
importing torch.
"""
