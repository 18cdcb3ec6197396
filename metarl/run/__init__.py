"""The run machinery every kind of run shares (RL training, few-shot training, the search):
the run loop, resuming, atomic checkpoints and files, logging, Ctrl-C handling, the watchdog,
resource figures and plots. It knows no learner and no config."""
