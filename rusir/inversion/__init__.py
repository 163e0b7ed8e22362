"""RUSIR itself: latent spaces and their expansions, normalised gradient descent, the
multiresolution loss (+ presets as data), the per-phase schedule, the one step loop every method
runs (loop), the method protocol and result type (method), and the W -> W+ -> W++ restore."""
