"""Experiments: grids (``tune_configs/``, shipped inside the package as ``experiments/grids``), the checks a
grid's trials pass before launch, and the experiment folder's format."""
