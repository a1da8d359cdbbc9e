"""Hyperparameter search with hyperopt: the search, its spaces, trial documents (JSON) and search folders."""
