"""Studies: configurations of the engine (`rusir.engine`) and what reads their records -- one
experiment (`experiment`), the IQA-loss study (`iqa`), ablations (`ablation`), robustness
(`robustness`), result tables (`results`) and figure grids (`figures`)."""
