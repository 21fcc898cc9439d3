"""Datasets: formats, specs, the synthetic generator, checks, clip datasets and the DataModule."""
