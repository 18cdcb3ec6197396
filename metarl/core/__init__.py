"""The maths: pure functions of tensors and parameter dicts (adaptation, meta-gradients and
their estimators, policies, episodes, baselines, TRPO, Adam, linear algebra). Nothing here reads
a file, steps an environment or knows a config; every layer above builds on it."""
