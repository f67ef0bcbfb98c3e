"""Checkpoints side by side on the training material's validation split, and a forced branch on a paired set.

    python benchmarks/checkpoint_compare.py router OLD.pt NEW.pt            # router accuracy, 500 thumbnails
    python benchmarks/checkpoint_compare.py branch rain OLD.pt NEW.pt       # branch PSNR, 40 validation pairs
    python benchmarks/checkpoint_compare.py forced haze DIR OLD.pt NEW.pt   # a branch forced on a paired set
    python benchmarks/checkpoint_compare.py model OLD.pt NEW.pt             # a whole model (e.g. cmudrn-t3)

`router` and `branch` build the validation split exactly as training does (`stage_data.stage_images`, the
hold-out globs below), with and without photographed rain streaks (`--data` names the training material's
folder, default ../shared/data): this is how issue 18's checkpoints were chosen. `forced` runs
`UFFN.restore(x, NAME)` on every input of a RESIDE-layout paired set (`hazy/` → `clear/`) and reports the mean
RGB PSNR: a measurement on an evaluation set, never a selection. `model` validates whole checkpoints as a
whole-model training run does (`trainer.validate` on synthetic weather over the held-out images, 40 samples;
for CMUDRN rain and snow). Needs PyTorch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from edgerestore.data.router_thumbnails import RouterThumbnailDataset
from edgerestore.metrics import calculate_psnr
from edgerestore.models import zoo
from edgerestore.train import branch_stage, router_stage, stage_data, trainer
from edgerestore.train.config import TrainConfig

HOLD_OUT = ["*/141[89]*", "*/seq0004/*", "*/0016E5/*", "*/real_fog_dawn/*[05].jpg"]


def _config(data: Path, streaks: bool, profile: str = "uffn-tiny") -> TrainConfig:
    return TrainConfig(
        profile=profile,
        out=Path("unused.pt"),
        clean_dir=[data / "clean", data / "road"],
        real={"haze": [data / "train/real_fog_dawn", data / "train/sots_indoor_train/hazy"]},
        hold_out=HOLD_OUT,
        rain_streaks=data / "render/rain_streaks_garg_nayar" if streaks else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=("router", "branch", "forced", "model"))
    parser.add_argument("args", nargs="+", help="[NAME] [DIR] CHECKPOINT ...")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.what == "forced":
        name, folder, *paths = args.args
        hazy = sorted(Path(folder, "hazy").iterdir())
        for path in paths:
            model, _ = zoo.load_checkpoint(path)
            scores = []
            for item in hazy:
                clear = next(Path(folder, "clear").glob(item.stem.split("_")[0] + ".*"))
                x = cv2.cvtColor(cv2.imread(str(item)), cv2.COLOR_BGR2RGB)
                y = cv2.cvtColor(cv2.imread(str(clear)), cv2.COLOR_BGR2RGB)
                with torch.no_grad():
                    out = model.restore(torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255, name)
                o = np.round(out.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
                scores.append(calculate_psnr(o, y[: o.shape[0], : o.shape[1]]))
            print(f"{path}: {name} forced, {len(scores)} images, RGB PSNR {np.mean(scores):.2f} dB")
        return
    if args.what == "model":
        for streaks in (True, False):
            for path in args.args:
                model, meta = zoo.load_checkpoint(path)
                _, val = stage_data.build_datasets(_config(args.data, streaks, meta["profile"]), model)
                metrics = trainer.validate(model, val, 40)
                result = ", ".join(f"{k} {v:.2f}" for k, v in metrics.items())
                print(
                    f"{path} ({'with' if streaks else 'without'} photographed streaks): {result}", flush=True
                )
        return
    name, paths = ("router", args.args) if args.what == "router" else (args.args[0], args.args[1:])
    for streaks in (True, False):
        cfg = _config(args.data, streaks)
        if args.what == "router":
            images = stage_data.stage_images(cfg)
            val = RouterThumbnailDataset(
                size=224,
                seed=cfg.seed + 10_000,
                images=images.val,
                real=images.real_val,
                streaks=images.streaks,
            )
        else:
            _, val = branch_stage.branch_datasets(cfg, name)
        for path in paths:
            model, _ = zoo.load_checkpoint(path)
            with torch.no_grad():
                if args.what == "router":
                    acc, confusion = router_stage.router_accuracy(model, val, 500)
                    result = f"accuracy {acc:.3f}, confusion {confusion}"
                else:
                    result = ", ".join(
                        f"{k} {v:.2f}" for k, v in branch_stage.branch_psnr(model, name, val, 40).items()
                    )
            print(
                f"{path} ({'with' if streaks else 'without'} photographed streaks): {name} {result}",
                flush=True,
            )


if __name__ == "__main__":
    main()
