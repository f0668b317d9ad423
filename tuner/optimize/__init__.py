"""`tuner optimize`: the search space, the study (Optuna) and the backends that evaluate a configuration."""
