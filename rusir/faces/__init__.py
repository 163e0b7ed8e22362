"""Real photographs: find the faces, align them as the generator's dataset was aligned, restore
them, paste them back.

* `align`  -- FFHQ-style alignment from five landmarks (or dlib's 68, reduced as FFHQ did); the
  landmark checks; each generator's template.
* `detect` -- faces and their landmarks: dlib (offline, 68 points) or OpenCV's YuNet
  (`pip install 'rusir[photos]'`).
* `paste`  -- the inverse warp and the blend into the photo, by a face mask or the whole square.
* `photo`  -- the whole job: degradation in the aligned frame, restore, paste back; the output's
  scale and memory, each face saved when done (resumable).

The public names are in `rusir` (`rusir.align`, `rusir.restore_photo`, ...); this package
re-exports nothing, so `rusir.faces.align` is the module.
"""
