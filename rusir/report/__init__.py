"""`rusir report`: the paper's tables and plots from a benchmark folder written by `rusir bench`."""
