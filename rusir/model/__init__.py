"""The generator and where it comes from: StyleGAN2-ADA synthesis (W / W+ / W++), the exec-free
reader of official pickles, rusir's safetensors checkpoints, the weights registry (pinned URLs,
cache, checksums) and the named generators. Knows nothing of restoration."""
