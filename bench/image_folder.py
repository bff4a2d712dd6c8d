"""Training throughput on an image folder: ``data=image_folder`` with its natural model
(``model=resnet``, the CIFAR ResNet-32), 32x32 RGB PNGs generated here, random crop + flip on,
on the CPU (or CUDA with mixed precision where ``trainer.device=auto`` finds a GPU).

    .venv/bin/python bench/image_folder.py [--classes 10] [--per-class 40] [--epochs 1] [--steps 4] [hydra overrides...]

Prints the one-off decode time, the cached read, and two throughputs: training steps alone
(forward, backward and optimizer step of ``fit``'s own parts on augmented batches, after one
warm-up batch) and ``fit`` end to end (validation after every epoch included).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))  # bench/ is scripts, not a package
from _common import config, machine  # noqa: E402
from imbsweep._amp import Amp  # noqa: E402
from imbsweep.data import clear_memory_cache, image_augment  # noqa: E402
from imbsweep.reporting import Reporter  # noqa: E402
from imbsweep.training import fit, memory_layout, prepare  # noqa: E402


def write_pngs(root: Path, classes: int, per_class: int, size: int = 32) -> None:
    """Noise images, each class with its own bright colour patch (so there is something to learn)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c:02d}").mkdir(parents=True)
        for i in range(per_class):
            a = rng.integers(0, 160, (size, size, 3), dtype=np.uint8)
            r, g = divmod(c, 4)
            a[4 + 6 * g:10 + 6 * g, 4 + 6 * r:10 + 6 * r] = 255
            Image.fromarray(a).save(root / f"class{c:02d}" / f"{i:04d}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--steps", type=int, default=4, help="timed training steps (after one warm-up)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        write_pngs(root, args.classes, args.per_class)
        base = [f"state_dir={tmp}/mlruns", "data=image_folder", f"data.path={root}", "data.n_val_per_class=5",
                "data.n_test_per_class=5", f"trainer.epochs={args.epochs}", *args.overrides]
        cfg = config(base)
        t = time.perf_counter()
        setup = prepare(cfg)
        decode = time.perf_counter() - t
        clear_memory_cache()
        t = time.perf_counter()
        setup = prepare(cfg)
        cached = time.perf_counter() - t
        ds, model, dev = setup.dataset, setup.model, setup.device
        print(f"{len(ds.y_train) + len(ds.y_val) + len(ds.y_test)} images {ds.image_shape}: decoded, resized and "
              f"normalised in {decode:.2f} s (once); read from the cache in {cached:.2f} s", flush=True)

        # training steps alone: fit's parts (augmentation, autocast, loss, step) on batches of trainer.batch_size
        bs = int(cfg.trainer.batch_size)
        layout = memory_layout(cfg.trainer, model)  # trainer.channels_last, as fit applies it
        x = torch.as_tensor(ds.x_train, device=dev).contiguous(memory_format=layout)
        y = torch.as_tensor(ds.y_train, device=dev)
        aug = image_augment(cfg.data, ds, 0)
        amp = Amp(dev, cfg.trainer.get("amp", "auto"))
        gen = torch.Generator().manual_seed(0)
        model.train()
        times = []
        for step in range(args.steps + 1):
            idx = torch.randint(0, len(y), (bs,), generator=gen).to(dev)
            if dev.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            xb = (x[idx] if aug is None else aug(x[idx])).contiguous(memory_format=layout)
            with amp.autocast():
                loss = setup.loss(model(xb), y[idx])
            setup.optimizer.zero_grad(set_to_none=True)
            amp.backward(loss)
            amp.step(setup.optimizer)
            if dev.startswith("cuda"):
                torch.cuda.synchronize()
            if step:  # the first is warm-up
                times.append(time.perf_counter() - t)
        steps_rate = bs / float(np.median(times))

        res = fit(cfg, Reporter(), prepare(cfg))
        fit_rate = len(ds.y_train) * res.epochs_run / res.metrics["fit_time_s"]
    print(f"machine: {machine()}; device {dev}, mixed precision {amp.dtype or 'off'}, "
          f"channels-last {layout == torch.channels_last}")
    print(f"model {cfg.model._target_} {cfg.model.arch} (depth {cfg.model.depth}), batch {bs}, crop padding "
          f"{cfg.data.random_crop_padding}, flip {cfg.data.random_flip}, {len(ds.y_train)} training images")
    print(f"training steps: {steps_rate:.0f} images/s (median of {args.steps} steps)")
    print(f"fit end to end: {fit_rate:.0f} training images/s over {res.epochs_run} epochs "
          f"({res.metrics['fit_time_s']:.1f} s, validation included); test/balanced_acc "
          f"{res.metrics['test/balanced_acc']:.3f}")


if __name__ == "__main__":
    main()
