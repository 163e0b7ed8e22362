"""RUSIR itself: latent spaces and their expansions, normalised gradient descent, the
multiresolution loss (+ presets as data), the per-phase schedule, and the W -> W+ -> W++ loop."""
