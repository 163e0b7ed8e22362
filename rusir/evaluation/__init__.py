"""Measuring restorations: one experiment (degrade, restore, score vs naive), the benchmark
runner and its record store, report tables, the IQA-loss study, ablations, result tables and
figure grids."""
