"""RL meta-learning: the learners and outer steps behind their registries, the meta-learner
that samples and updates, the trainer (a run of the shared loop), and what uses a trained
policy: evaluation, comparison with baselines, videos and benchmarks."""
