"""Measuring restorations: one experiment (degrade, restore, score vs naive), the benchmark
runner (`runner`, planned by `plan`) and its record store (`records`: the only writer of
records), report tables, the IQA-loss study (a configuration of the runner), ablations, result
tables and figure grids."""
