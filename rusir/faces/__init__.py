"""Real photographs: find the faces, align them as the generator's dataset was aligned, restore
them, paste them back.

* `align`  -- FFHQ-style alignment from five landmarks; each generator's template.
* `detect` -- faces and their landmarks with OpenCV's YuNet (`pip install 'rusir[photos]'`).
* `paste`  -- the inverse warp and the feathered blend into the photo.
* `photo`  -- the whole job: degradation in the aligned frame, restore, paste back.

The public names are in `rusir` (`rusir.align`, `rusir.restore_photo`, ...); this package
re-exports nothing, so `rusir.faces.align` is the module.
"""
