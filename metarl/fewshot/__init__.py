"""Supervised few-shot learning: sinusoid and Omniglot task samplers, models and training."""
