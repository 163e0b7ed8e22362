"""Train a small DDPM on the avatar faces: the embedded diffusion prior DDRM restores with.

    python -m rusir.train.diffusion --data runs/data/train64.npy --out runs/ddpm64 --max-minutes 35

The same data as the embedded StyleGAN2 (`rusir.train.build_data`, training seeds from 0), so
that Table 3 compares RUSIR and DDRM with priors of one domain. The recipe is DDPM's (Ho et al.
2020), as DDRM's CelebA-HQ model was trained: epsilon prediction, the linear beta schedule
1e-4..0.02 over 1000 steps, the simple L2 loss on uniformly drawn timesteps, Adam and an EMA of
the weights, which is what gets saved. The network is a `diffusers.UNet2DModel`; its size is an
option because a CPU budget allows only a narrow one (docs/ddrm.md has what was trained and how
good it is).

Outputs in <out>/: log.jsonl, samples_<kimg>.png (EMA net, 50 DDIM steps, fixed noise),
state.pt (resumable with --resume: net, EMA, optimiser, RNGs, images seen, wall time) and
unet/ (the EMA net, `UNet2DModel.save_pretrained`: config.json + safetensors) with
unet/training.json (config, images seen, wall time, hardware, command). `state.pt` is written
atomically at every `--snap-every` steps and when SIGTERM/SIGINT or `--max-minutes` stops the run.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..model.diffusion import make_scheduler, sample_images
from ..validation import (MAX_BATCH, MAX_CHANNELS, MAX_COUNT, MAX_RATE, MAX_SEED, MAX_UNET_LEVELS,
                          number, option, whole)
from .trainer import hardware, load_images, load_run_state, save_grid, save_run_state, stop_requests

__all__ = ["parse_args", "build_unet", "main"]


def _widths(text: str) -> tuple[int, ...]:
    """--channels: 1 to MAX_UNET_LEVELS comma-separated widths in [1, MAX_CHANNELS]."""
    parts = str(text).split(",")
    if not 1 <= len(parts) <= MAX_UNET_LEVELS:
        raise ValueError(f"--channels needs 1 to {MAX_UNET_LEVELS} comma-separated widths, got {text!r}")
    return tuple(whole(c, "each --channels width", 1, MAX_CHANNELS, "MAX_CHANNELS") for c in parts)


def _flags(text: str) -> tuple[bool, ...]:
    """--attention: comma-separated 0 or 1."""
    return tuple(bool(whole(c, "each --attention entry (0 or 1)", 0, 1, None))
                 for c in str(text).split(","))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The run's options, each checked by rusir.validation's checkers (a bad value: argparse's
    usage error, exit 2, before any data is read or any network built)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a = p.add_argument
    count = option(whole, "a count", 1, MAX_COUNT, "MAX_COUNT")
    a("--data", required=True, help=".npy uint8 [N,H,W,3], or a folder of such files")
    a("--out", required=True, help="run folder, e.g. runs/ddpm64")
    a("--kimg", type=option(number, "kimg", 0.0, MAX_COUNT, "MAX_COUNT"), default=10000,
      help="stop after this many thousand images")
    a("--max-minutes", type=option(number, "minutes", 0.0, MAX_COUNT, "MAX_COUNT", strict=False),
      default=0, help="also stop (and save) after this wall time; 0 = no limit")
    a("--batch", type=option(whole, "a batch size", 1, MAX_BATCH, "MAX_BATCH"), default=16)
    a("--lr", type=option(number, "a rate", 0.0, MAX_RATE, "MAX_RATE"), default=5e-4)
    a("--warmup", type=option(whole, "steps", 0, MAX_COUNT, "MAX_COUNT"), default=200,
      help="steps of linear learning-rate warm-up")
    a("--ema", type=option(number, "an EMA decay", 0.0, 1.0, None, strict=False), default=0.999,
      help="EMA decay (ramped: min(ema, (1 + step) / (10 + step)))")
    a("--channels", type=option(_widths), default=_widths("32,64,64,128"),
      help="UNet block_out_channels, one per resolution from the top")
    a("--attention", type=option(_flags), default=_flags("0,0,0,1"),
      help="1 = attention at that resolution (the coarsest only: cheap)")
    a("--layers-per-block", type=option(whole, "layers", 1, MAX_UNET_LEVELS, None), default=1)
    a("--groups", type=option(whole, "GroupNorm groups", 1, MAX_CHANNELS, "MAX_CHANNELS"), default=8,
      help="GroupNorm groups (divides every channel count)")
    a("--mirror", type=option(whole, "0 or 1", 0, 1, None), default=1, help="random horizontal flips")
    a("--seed", type=option(whole, "a seed", 0, MAX_SEED, "MAX_SEED"), default=0)
    a("--log-every", type=count, default=20)
    a("--snap-every", type=count, default=500)
    a("--threads", type=option(whole, "threads", 1, 1024, None), default=2)
    a("--device", type=option(_device), default="auto")
    a("--resume", action="store_true", help="continue from <out>/state.pt")
    args = p.parse_args(argv)
    if len(args.attention) != len(args.channels):
        p.error(f"--attention has {len(args.attention)} entries, --channels {len(args.channels)}")
    if any(c % args.groups for c in args.channels):
        p.error(f"--groups {args.groups} must divide every channel count {args.channels}")
    return args


def _device(text: str) -> str:
    """`auto`, or a device this machine has (checked now, not after the data are read)."""
    if text != "auto":
        try:
            device = torch.device(text)
        except RuntimeError:
            raise ValueError(f"--device {text!r}: not a device name (cpu, cuda, cuda:0, ...)") from None
        if device.type == "cuda" and (not torch.cuda.is_available()
                                      or (device.index or 0) >= torch.cuda.device_count()):
            raise ValueError(f"--device {text}: this machine has no such CUDA device")
    return text


def build_unet(args: argparse.Namespace, resolution: int):
    """The epsilon network: a UNet2DModel with one block per entry of --channels."""
    from diffusers import UNet2DModel  # heavy; the `diffusion` extra
    down = tuple("AttnDownBlock2D" if att else "DownBlock2D" for att in args.attention)
    up = tuple(b.replace("Down", "Up") for b in reversed(down))
    return UNet2DModel(sample_size=resolution, in_channels=3, out_channels=3,
                       layers_per_block=args.layers_per_block, block_out_channels=args.channels,
                       down_block_types=down, up_block_types=up, norm_num_groups=args.groups)


def ddpm_loss(net, x0: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """DDPM's simple loss: || eps - eps_theta(sqrt(a_t) x0 + sqrt(1 - a_t) eps, t) ||^2, t uniform."""
    t = torch.randint(0, len(alphas_cumprod), (x0.shape[0],), device=x0.device)   # [B]
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    eps = torch.randn_like(x0)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * eps                                   # [B, 3, R, R]
    return F.mse_loss(net(xt, t).sample, eps)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        with stop_requests() as stop:
            train(args, stop, argv)
    except (ValueError, OSError) as exc:    # bad data, a state.pt that is not one: one line
        sys.exit(f"rusir.train.diffusion: error: {' '.join(str(exc).split())}")


def train(args: argparse.Namespace, stop: list[bool], argv: list[str] | None) -> None:
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_images(args.data)                                               # uint8 [N, 3, R, R]
    resolution = data.shape[-1]
    if data.shape[-2] != resolution or resolution % 2 ** (len(args.channels) - 1):
        raise ValueError(f"--data {args.data}: {data.shape[-2]}x{resolution} images; the UNet needs "
                         f"square ones whose side divides by 2^{len(args.channels) - 1} (one "
                         "halving per --channels entry after the first)")
    torch.manual_seed(args.seed)
    net = build_unet(args, resolution).to(device)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    scheduler = make_scheduler()
    alphas = scheduler.alphas_cumprod.to(device)
    data_gen = torch.Generator().manual_seed(args.seed)
    step, seen, wall = 0, 0, 0.0
    if args.resume:
        st = load_run_state(out / "state.pt")
        net.load_state_dict(st["net"]), ema.load_state_dict(st["ema"]), opt.load_state_dict(st["opt"])
        torch.set_rng_state(st["rng"]), data_gen.set_state(st["data_rng"])
        step, seen, wall = st["step"], st["seen"], st["wall"]
    fixed_noise = torch.randn(16, 3, resolution, resolution, generator=torch.Generator().manual_seed(123))
    command = "python -m rusir.train.diffusion " + shlex.join(sys.argv[1:] if argv is None else argv)
    started, log = time.time(), open(out / "log.jsonl", "a")

    def snapshot(stats: dict) -> None:
        st = dict(net=net.state_dict(), ema=ema.state_dict(), opt=opt.state_dict(),
                  rng=torch.get_rng_state(), data_rng=data_gen.get_state(), step=step, seen=seen,
                  wall=wall + time.time() - started)
        save_run_state(st, out / "state.pt")
        ema.save_pretrained(out / "unet", safe_serialization=True)
        meta = dict(images_seen=seen, steps=step, wall_time_s=round(st["wall"], 1),
                    hardware=hardware(device, args.threads), dataset=list(data.shape),
                    config={k: v for k, v in vars(args).items() if k not in ("resume",)},
                    last_stats=stats, command=command)
        (out / "unet" / "training.json").write_text(json.dumps(meta, indent=1) + "\n")
        with torch.no_grad():
            grid = sample_images(ema, make_scheduler(), fixed_noise.to(device), steps=50)
        save_grid(grid * 2 - 1, out / f"samples_{seen // 1000:06d}.png", cols=8)

    stats: dict = {}
    while seen < args.kimg * 1000 and not stop:
        if args.max_minutes and wall + time.time() - started > args.max_minutes * 60:
            break
        idx = torch.randint(0, len(data), (args.batch,), generator=data_gen)
        x0 = data[idx].to(device).float() / 127.5 - 1                            # [B, 3, R, R]
        if args.mirror:
            flip = torch.rand(args.batch, generator=data_gen) < 0.5
            x0[flip] = x0[flip].flip(-1)
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / max(args.warmup, 1))
        loss = ddpm_loss(net, x0, alphas)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pn in zip(ema.parameters(), net.parameters()):
                pe.lerp_(pn, 1 - decay)
        step, seen = step + 1, seen + args.batch
        if step % args.log_every == 0:
            elapsed = wall + time.time() - started
            stats = dict(step=step, kimg=round(seen / 1000, 3), loss=round(float(loss.detach()), 5),
                         minutes=round(elapsed / 60, 2), img_per_s=round(seen / max(elapsed, 1e-9), 1))
            log.write(json.dumps(stats) + "\n"), log.flush()
            print(json.dumps(stats), flush=True)
        if step % args.snap_every == 0:
            snapshot(stats)
    snapshot(stats)
    log.close()


if __name__ == "__main__":
    main()
