"""Experiment runners behind ``hvps demo`` and ``hvps ablate`` (their YAML lives in ``experiments/``)."""
