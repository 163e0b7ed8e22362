"""Training the embedded generator (toyfaces64): the trainer, its discriminator, widening a
trained generator, and the avatar data builder. Nothing outside this folder imports it.

    python -m rusir.train --data runs/data/train64.npy --out runs/small ...   # see docs/training.md
    python -m rusir.train.build_data --out runs/data/train64.npy --n 20000
"""
