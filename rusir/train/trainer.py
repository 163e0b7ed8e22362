"""Compact StyleGAN2 training for `rusir.model.stylegan2.Generator` (trains the embedded default).

The recipe is StyleGAN2's, cut to what matters at 64 px on a few CPU cores:
  * non-saturating logistic loss; lazy R1 on reals every `--r1-every` D steps (Adam lr/betas
    rescaled as in the paper so the lazy schedule matches the every-step one);
  * one generator forward per iteration: the fakes are used detached for the D step, then
    (through the freshly updated D) for the G step, which halves the expensive grouped convs;
  * G_ema with a half-life given in images (ramped up early, so the first snapshots aren't
    stuck on the random init), and w_avg tracked during G forwards (needed for truncation
    and as the inversion starting point);
  * optional style mixing (regularises W+ so per-layer codes stay meaningful for inversion);
  * every random draw comes from the torch CPU (or CUDA) RNG or a dedicated data generator, all
    saved in `state.pt`, so `--resume` continues the same trajectory (bit-for-bit on CPU with
    the same machine and thread count; tests/test_train.py checks it. On CUDA, cudnn.benchmark
    picks kernels per process, so a resumed run matches statistically, not bitwise);
  * `state.pt` is written atomically and durably (temporary file, fsync, rename), at every
    `--snap-every` steps and when SIGTERM/SIGINT or `--max-minutes` stops the run, so a killed
    run loses at most the steps since its last snapshot and never the snapshot itself.
Outputs in runs/<name>/: log.jsonl, samples_<kimg>.png (fixed z, G_ema, const noise, psi 1),
state.pt (resumable), G_ema.safetensors (see rusir.model.checkpoint).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import pickle
import platform
import shlex
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..model.checkpoint import save_generator
from .discriminator import Discriminator
from ..model.stylegan2 import Generator
from .widen import widen_state

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a = p.add_argument
    a("--data", required=True, help=".npy uint8 [N,H,W,3], or a folder of such chunk files")
    a("--out", required=True, help="run folder, e.g. runs/toyfaces")
    a("--kimg", type=float, default=200, help="stop after this many thousand real images")
    a("--max-minutes", type=float, default=0, help="also stop (and save) after this wall time; 0 = no limit")
    a("--batch", type=int, default=32)
    a("--seed", type=int, default=0)
    a("--z-dim", type=int, default=128)
    a("--w-dim", type=int, default=128)
    a("--map-layers", type=int, default=4)
    a("--g-base", type=int, default=2048, help="G channels per resolution r: min(base / r, max)")
    a("--g-max", type=int, default=128)
    a("--d-base", type=int, default=2048)
    a("--d-max", type=int, default=128)
    a("--conv-clamp", type=float, default=256)
    a("--lr", type=float, default=0.0025)
    a("--gamma", type=float, default=0.5, help="R1 weight")
    a("--r1-every", type=int, default=16)
    a("--ema-kimg", type=float, default=10.0, help="G_ema half-life in thousand images")
    a("--ema-rampup", type=float, default=0.05, help="half-life <= rampup * images seen (0 = off)")
    a("--mix-prob", type=float, default=0.5, help="style-mixing probability")
    a("--mirror", type=int, default=1, help="random horizontal flips of reals")
    a("--noise", type=int, default=1, help="0: per-pixel noise inputs fixed at strength 0 (flat-shaded "
      "domains have no stochastic detail; G otherwise fakes edges with noise speckle)")
    a("--log-every", type=int, default=20, help="steps")
    a("--snap-every", type=int, default=250, help="steps between state.pt / G_ema / sample grid")
    a("--threads", type=int, default=2)
    a("--device", default="auto")
    a("--resume", action="store_true", help="continue from <out>/state.pt")
    a("--init-from", default="", help="start a new (wider) run from another run's state.pt: weights "
      "widened function-preservingly (rusir.train.widen), images seen and wall time carried over, "
      "optimiser moments reset")
    a("--bench", type=int, default=0, help="only time this many steps (after 2 warm-up) and exit")
    return p.parse_args(argv)


def load_images(path: str) -> torch.Tensor:
    """uint8 [N, 3, H, W] from one .npy or every *.npy in a folder (sorted: a stable order)."""
    p = Path(path)
    files = sorted(p.glob("*.npy")) if p.is_dir() else [p]
    if not files or not all(f.is_file() for f in files):
        raise FileNotFoundError(f"no .npy images under {p}")
    arrays = []
    for f in files:
        try:
            a = np.load(f, mmap_mode="r")
        except (ValueError, OSError) as exc:       # truncated, not .npy, pickled objects
            raise ValueError(f"{f}: not a readable .npy array ({exc})") from None
        if a.ndim != 4 or a.shape[-1] != 3 or a.shape[0] < 1 or a.dtype != np.uint8:
            raise ValueError(f"{f}: expected uint8 images [N >= 1, H, W, 3], got {a.dtype} "
                             f"{list(a.shape)}")
        arrays.append(a)
    if len({a.shape[1:] for a in arrays}) > 1:
        raise ValueError(f"{path}: the .npy files hold images of different sizes")
    x = np.concatenate([np.asarray(a) for a in arrays])
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


def build(args: argparse.Namespace, resolution: int) -> tuple[Generator, Discriminator]:
    G = Generator(args.z_dim, 0, args.w_dim, resolution, 3,
                  mapping_kwargs=dict(num_layers=args.map_layers),
                  synthesis_kwargs=dict(channel_base=args.g_base, channel_max=args.g_max,
                                        num_fp16_res=0,
                                        conv_clamp=args.conv_clamp or None))
    D = Discriminator(resolution, 3, channel_base=args.d_base, channel_max=args.d_max)
    return G, D


def save_grid(img: torch.Tensor, path: Path, cols: int = 8) -> None:
    """[N,3,H,W] in ~[-1,1] -> one PNG grid (clamped only for display)."""
    x = ((img.clamp(-1, 1) + 1) * 127.5).round().byte().cpu()
    n, c, h, w = x.shape
    rows = math.ceil(n / cols)
    grid = torch.zeros(c, rows * h, cols * w, dtype=torch.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[:, r * h:(r + 1) * h, k * w:(k + 1) * w] = x[i]
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(path)


def capture_rng(data_gen: torch.Generator, device: torch.device) -> dict[str, torch.Tensor | None]:
    """Every RNG a training step draws from: torch's CPU RNG (z, noise, style mixing on CPU), the
    data generator (batch indices, flips) and, on CUDA, the device RNG (z and mixing there)."""
    return dict(rng=torch.get_rng_state(), data_rng=data_gen.get_state(),
                cuda_rng=torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def restore_rng(st: Mapping[str, Any], data_gen: torch.Generator, device: torch.device) -> None:
    """Inverse of `capture_rng`. The RNG setters accept only CPU ByteTensors, hence `.cpu()`:
    a state mapped onto CUDA when loaded would otherwise fail to resume. A CPU-saved state has no
    CUDA RNG; resumed on CUDA, that RNG keeps the seed's stream (the run is not bitwise anyway)."""
    torch.set_rng_state(st["rng"].cpu())
    data_gen.set_state(st["data_rng"].cpu())
    if device.type == "cuda" and st.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(st["cuda_rng"].cpu(), device)


def load_run_state(path: str | Path) -> dict[str, Any]:
    """A run's state.pt with every tensor on the CPU, whichever device saved it or resumes it.

    Why the CPU: `load_state_dict` copies weights onto the modules' device anyway; the RNG
    setters need CPU tensors; non-capturable Adam keeps its `step` counters on the CPU (mapped
    onto CUDA they would cost one host sync per parameter per step); and a GPU run's state then
    also loads on a machine without CUDA.

    Read as plain data (`weights_only`: tensors, numbers, strings, containers): a state.pt is a
    file anyone could have put in a run folder, and a pickle would run its code on --resume.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no run state {path} to resume from")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = " ".join(str(exc).split())[:200]
        raise ValueError(f"{path} is not a run state of plain tensors and numbers (refused "
                         f"unread: it could run code): {first}") from None


def save_run_state(st: Mapping[str, Any], path: Path) -> None:
    """torch.save `st` to `path` atomically and durably, so a kill or crash never loses the last one.

    Written to a temporary file, flushed and fsync'ed, then renamed over `path` (atomic on POSIX)
    and the folder fsync'ed: `path` is at every moment either the previous complete state or
    the new one. A failed write leaves the previous state in place and removes the temporary.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(st, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # POSIX: make the rename itself survive a power cut
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def stop_requests() -> Iterator[list[bool]]:
    """While active, SIGTERM/SIGINT append to the yielded list instead of killing the process.

    The loop then finishes its current step and saves, so `--resume` loses nothing. The
    previous handlers come back on exit: `main()` may run inside a longer-lived process
    (tests, notebooks) whose Ctrl+C must work again afterwards.
    """
    stop: list[bool] = []
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, lambda *_: stop.append(True)) for sig in signals}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def hardware(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.machine()}, {threads} torch threads, {os.cpu_count()} cores visible)"


def main(argv: list[str] | None = None) -> None:
    """Train (or `--resume`) a run; SIGTERM/SIGINT from the start on end it with a saved state."""
    with stop_requests() as stop:
        run_training(argv, stop)


def run_training(argv: list[str] | None, stop: list[bool]) -> None:
    """The training run of `main`; it stops (and saves) once `stop` is non-empty."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                          if args.device == "auto" else args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes every step: let cuDNN pick its fastest kernels
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_images(args.data).to(device)
    res = data.shape[-1]
    torch.manual_seed(args.seed)
    G, D = build(args, res)
    G, D = G.to(device).train(), D.to(device).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    c = args.r1_every / (args.r1_every + 1)  # lazy-regularisation correction (StyleGAN2 app. B)
    opt_G = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(0.0, 0.99), eps=1e-8)
    opt_D = torch.optim.Adam(D.parameters(), lr=args.lr * c, betas=(0.0, 0.99 ** c), eps=1e-8)
    data_gen = torch.Generator().manual_seed(args.seed + 1)
    grid_z = torch.randn(64, G.z_dim, generator=torch.Generator().manual_seed(12345)).to(device)
    step, nimg, wall = 0, 0, 0.0
    state_path = out / "state.pt"
    if args.resume and state_path.exists():
        st = load_run_state(state_path)
        if st["G_config"] != G.init_kwargs or st["D_config"] != D.init_kwargs:
            raise SystemExit("--resume: the architecture arguments differ from the saved run")
        G.load_state_dict(st["G"]); D.load_state_dict(st["D"]); G_ema.load_state_dict(st["G_ema"])
        opt_G.load_state_dict(st["opt_G"]); opt_D.load_state_dict(st["opt_D"])
        step, nimg, wall = st["step"], st["nimg"], st["wall"]
        restore_rng(st, data_gen, device)
        print(f"resumed {state_path} at step {step}, {nimg / 1000:.1f} kimg", flush=True)
    elif args.init_from:
        if not Path(args.init_from).is_file():
            raise SystemExit(f"--init-from: no such run state {args.init_from} (a run's state.pt)")
        st = load_run_state(args.init_from)
        try:
            for net, key in ((G, "G"), (D, "D"), (G_ema, "G_ema")):
                widen_state(net, st[key])
        except ValueError as err:  # narrower target, other mapping/D head: say which tensor
            raise SystemExit(f"--init-from {args.init_from}: {err}") from None
        step, nimg, wall = st["step"], st["nimg"], st["wall"]
        print(f"initialised from {args.init_from} at {nimg / 1000:.1f} kimg "
              f"({st['G_config']['synthesis_kwargs']} -> {G.init_kwargs['synthesis_kwargs']})", flush=True)
    if not args.noise:  # also applied to a resumed run that had noise: G adapts within a few kimg
        with torch.no_grad():
            for net in (G, G_ema):
                for name, p in net.named_parameters():
                    if name.endswith("noise_strength"):
                        p.zero_().requires_grad_(False)  # grad stays None: Adam skips it
    command = "python -m rusir.train " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    print(f"data {tuple(data.shape)}, device {device}, G {sum(p.numel() for p in G.parameters())/1e6:.2f}M "
          f"D {sum(p.numel() for p in D.parameters())/1e6:.2f}M params, num_ws {G.num_ws}", flush=True)

    def snapshot(stats: dict) -> None:
        """state.pt (resumable), G_ema.safetensors (shippable) and a sample grid."""
        with torch.no_grad():
            imgs = torch.cat([G_ema.synthesis(G_ema.mapping(z, None), noise_mode="const")
                              for z in grid_z.split(16)])
        save_grid(imgs, out / f"samples_{nimg // 1000:06d}.png")
        st = dict(G=G.state_dict(), D=D.state_dict(), G_ema=G_ema.state_dict(),
                  opt_G=opt_G.state_dict(), opt_D=opt_D.state_dict(), step=step, nimg=nimg,
                  wall=wall, **capture_rng(data_gen, device),
                  G_config=G.init_kwargs, D_config=D.init_kwargs, args=vars(args))
        save_run_state(st, state_path)
        meta = dict(images_seen=nimg, kimg=round(nimg / 1000, 3), steps=step,
                    wall_time_s=round(wall, 1), hardware=hardware(device, args.threads),
                    command=command, dataset=f"{args.data} {tuple(data.shape)}",
                    last_stats=stats, train_args=vars(args), torch=torch.__version__)
        save_generator(G_ema, out / "G_ema.safetensors", meta)

    t_log, n_log = time.time(), 0
    acc: dict[str, list[float]] = {}
    stats: dict = {}
    if step == 0 and not args.bench:
        snapshot(stats)
    bench_t0 = None
    while nimg < args.kimg * 1000 and not (args.max_minutes and wall > args.max_minutes * 60) \
            and not stop:
        t0 = time.time()
        if args.bench and step == 2:
            bench_t0 = time.time()
        B = args.batch
        idx = torch.randint(len(data), (B,), generator=data_gen)
        real = data[idx.to(device)].float() / 127.5 - 1
        if args.mirror:
            flip = (torch.rand(B, generator=data_gen) < 0.5).to(device)
            real = torch.where(flip.view(-1, 1, 1, 1), real.flip(3), real)

        # Generator forward, shared by the D and G steps.
        z = torch.randn(B, G.z_dim, device=device)
        ws = G.mapping(z, None, update_w_avg=True)
        if args.mix_prob > 0:
            cut = torch.randint(1, G.num_ws, ()).item()
            mix = torch.rand(B, 1, 1, device=device) < args.mix_prob
            ws2 = G.mapping(torch.randn_like(z), None)
            ws = torch.where(mix & (torch.arange(G.num_ws, device=device).view(1, -1, 1) >= cut), ws2, ws)
        fake = G.synthesis(ws, noise_mode="random" if args.noise else "none")

        # D step: logistic loss, plus lazy R1 on the same real logits.
        D.requires_grad_(True)
        do_r1 = args.gamma > 0 and step % args.r1_every == 0
        real_in = real.detach().requires_grad_(do_r1)
        d_real, d_fake = D(real_in), D(fake.detach())
        loss_D = F.softplus(d_fake).mean() + F.softplus(-d_real).mean()
        if do_r1:
            (grad,) = torch.autograd.grad(d_real.sum(), real_in, create_graph=True)
            r1 = grad.square().sum(dim=[1, 2, 3]).mean()
            loss_D = loss_D + r1 * (args.gamma / 2) * args.r1_every
            acc.setdefault("r1", []).append(r1.item())
        opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        opt_D.step()

        # G step through the updated D (D's weights frozen, gradients flow to the image).
        D.requires_grad_(False)
        loss_G = F.softplus(-D(fake)).mean()
        opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        opt_G.step()

        # G_ema: half-life in images, ramped up while few images have been seen.
        nimg += B
        step += 1
        ema_nimg = args.ema_kimg * 1000
        if args.ema_rampup:
            ema_nimg = min(ema_nimg, nimg * args.ema_rampup)
        beta = 0.5 ** (B / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                p_ema.lerp_(p, 1 - beta)
            for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                b_ema.copy_(b)
        wall += time.time() - t0

        for k, v in (("loss_D", loss_D.item()), ("loss_G", loss_G.item()),
                     ("D_real", d_real.mean().item()), ("D_fake", d_fake.mean().item())):
            acc.setdefault(k, []).append(v)
        n_log += B
        if step % args.log_every == 0:
            now = time.time()
            stats = {k: round(float(np.mean(v)), 4) for k, v in acc.items()}
            stats.update(step=step, kimg=round(nimg / 1000, 2), img_s=round(n_log / (now - t_log), 1),
                         wall_min=round(wall / 60, 1))
            print(json.dumps(stats), flush=True)
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(stats) + "\n")
            acc, t_log, n_log = {}, now, 0
        if args.bench and step == args.bench + 2:
            print(f"BENCH {args.bench * B / (time.time() - bench_t0):.1f} img/s", flush=True)
            return
        if step % args.snap_every == 0:
            snapshot(stats)
    snapshot(stats)
    print(f"done: {nimg / 1000:.1f} kimg, {wall / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
