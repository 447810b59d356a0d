"""Ray Tune searches over hyperparameters, architectures and losses (see docs/tune.md).

Entry point: `tune.search.run_search`; the CLI is `unetflow tune`.
"""
