"""Benchmark the networks: parameter count (default width) and CPU forward time.

Every model of ``mkunet.models.MODELS`` at its default width (channels 16..256, four
down-sampling steps) plus the MK-UNet ablation variants, on one input of
(B, C, Z, Y, X) = (1, 4, 32, 64, 64) (i.e. 64 x 64 x 32 voxels, Z = 32 slices) and a
(1, 6) clinical vector, under ``torch.no_grad()`` in eval mode with a fixed number of
torch threads (default 2). One warm-up pass, then the median of ``--repeats`` timed
passes (>= 3), interleaved across models. Prints a table (markdown with ``--markdown``).

Usage::

    python benchmarks/models.py [--repeats 5] [--threads 2] [--markdown]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mkunet.models import build_model, count_parameters

#: (label, build_model name, kwargs)
VARIANTS: list[tuple[str, str, dict]] = [
    ("3-D U-Net (MONAI UNet, 2 res units)", "unet3d", {}),
    ("3-D ResNet (MONAI SegResNet)", "resnet3d", {}),
    ("Attention U-Net (MONAI)", "attention_unet", {}),
    ("MK-UNet (full: fusion + immune gates)", "mkunet", {}),
    ("MK-UNet, plain gates (no LVCR)", "mkunet", {"gate": "plain"}),
    ("MK-UNet, no clinical fusion", "mkunet", {"clinical_fusion": False}),
    ("MK-UNet, no gates, no fusion", "mkunet", {"gate": "none", "clinical_fusion": False}),
    ("MK-UNet, 1-channel input", "mkunet", {"in_channels": 1}),
    ("MK-UNet, trilinear up-sampling", "mkunet", {"upsample": "trilinear"}),
]

SHAPE_ZYX = (32, 64, 64)


def bench(repeats: int) -> list[tuple[int, float, float]]:
    """(parameters, median s, min s) of every variant.

    Timed passes are interleaved round-robin across the models (pass r of every model
    before pass r + 1 of any), so a change of machine load affects all models alike.
    """
    gen = torch.Generator().manual_seed(0)
    clinical = torch.rand(1, 6, generator=gen)
    images = {c: torch.rand(1, c, *SHAPE_ZYX, generator=gen) for c in (1, 4)}
    models = []
    for _, name, kwargs in VARIANTS:
        torch.manual_seed(0)
        models.append((build_model(name, **kwargs).eval(), images[kwargs.get("in_channels", 4)]))
    times: list[list[float]] = [[] for _ in models]
    with torch.no_grad():
        for model, image in models:
            model(image, clinical)  # warm-up
        for _ in range(repeats):
            for k, (model, image) in enumerate(models):
                t0 = time.perf_counter()
                model(image, clinical)
                times[k].append(time.perf_counter() - t0)
    return [(count_parameters(m), statistics.median(t), min(t)) for (m, _), t in zip(models, times)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per model (>= 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error(f"--repeats must be >= 3, got {args.repeats}")
    torch.set_num_threads(args.threads)
    rows = [(*variant, *result) for variant, result in zip(VARIANTS, bench(args.repeats))]
    header = (
        f"input (B, C, Z, Y, X) = (1, 4, {', '.join(map(str, SHAPE_ZYX))}), torch {torch.__version__}, "
        f"{args.threads} threads, median of {args.repeats} runs"
    )
    print(header)
    if args.markdown:
        print("\n| model | build_model | params | median forward (s) | min (s) |\n|---|---|---:|---:|---:|")
        for label, name, kwargs, params, med, best in rows:
            kw = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
            print(
                f"| {label} | `{name}`{'(' + kw + ')' if kw else ''} | {params / 1e6:.2f} M | {med:.3f} | {best:.3f} |"
            )
    else:
        print(f"{'model':40s} {'params':>10s} {'median s':>9s} {'min s':>7s}")
        for label, _, _, params, med, best in rows:
            print(f"{label:40s} {params / 1e6:9.2f}M {med:9.3f} {best:7.3f}")


if __name__ == "__main__":
    main()
