"""`python -m rusir.train ...`: run the trainer (rusir.train.trainer)."""
from .trainer import main

main()
