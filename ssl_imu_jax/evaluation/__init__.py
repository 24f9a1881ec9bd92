"""Evaluation and reporting: statistics, the feature baseline, the sweep and experiment
protocols, their reports, and committed result files (``publish``)."""
