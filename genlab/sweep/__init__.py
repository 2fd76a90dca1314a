"""`genlab sweep`: hyperparameter searches over an experiment with Optuna (`genlab.sweep.command`)."""
