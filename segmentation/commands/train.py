"""`prolab data`, `prolab train`, `prolab eval`, `prolab predict`: option parsing only."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from prolab_cli.errors import ProlabError
from prolab_cli.commands.options import (SummaryGroup, classes_option, device_option, inference_mode_option, option,
                                         out_dir_option, output_option, quiet_option, threads_option)
from prolab_cli.progress import is_quiet

_DATASETS = "ade20k, coco-stuff, pascal-context-59, cityscapes, bdd100k, generic, or (evaluation only) ade20k-847, pascal-context-459"
_DATASET_CLASSES = ("the dataset's class list: built-in name, alias or file  "
                    "[default: <data-root>/classes.txt, else the dataset's built-in list]")


def _pair(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    """An N or H,W (or HxW) option of positive integers, as (H, W), checked while the command line is parsed."""
    if value is None:
        return None
    try:
        numbers = [int(p) for p in value.lower().replace("x", ",").split(",")]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2) or min(numbers) < 1:
        raise click.BadParameter(f"{value!r}: expected N or H,W of positive integers")
    if max(numbers) > MAX_SIDE:
        raise click.BadParameter(f"{value!r}: a side above {MAX_SIDE} px (the released settings stay under 4,000)")
    return numbers[0], numbers[-1]


#: the largest window, stride or scale side accepted (a larger one only allocates without end)
MAX_SIDE = 16384


def _threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(max(threads, 1))


@click.group(cls=SummaryGroup)
def data() -> None:
    """Datasets: write a synthetic one, check a real one."""


@data.command("synth")
@click.option("--layout", default="ade20k", show_default=True, help=f"folder layout: {_DATASETS}")
@out_dir_option("dataset root to write", required=True, old_names=("--out",), name="out")
@click.option("--train", "num_train", type=click.IntRange(min=1), default=64, show_default=True, help="training images")
@click.option("--val", "num_val", type=click.IntRange(min=1), default=16, show_default=True, help="validation images")
@click.option("--size", type=click.IntRange(16, 2048), default=64, show_default=True, help="image side in pixels")
@option("--seen", "num_seen", old_names=("--classes",), type=click.IntRange(min=1), default=12, show_default=True,
        help="number of object classes seen in training")
@click.option("--heldout", "num_heldout", type=click.IntRange(min=0), default=4, show_default=True,
              help="number of object classes only in validation (described, never trained)")
@click.option("--colours", "num_colours", type=click.IntRange(1, 8), default=8, show_default=True,
              help="colours in the palette (classes are colour x texture x shape; 4 colours and --seen 64 leave "
                   "no property predicting another, as bench/train.py uses)")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the classes, layouts and images drawn")
@quiet_option
def synth(layout, out, num_train, num_val, size, num_seen, num_heldout, num_colours, seed):
    """Write a synthetic dataset of textured shapes in a real dataset's layout, with classes.txt
    and descriptions.json (all classes) / descriptions_seen.json (seen classes only)."""
    from segmentation.data.synth import write_synth

    root = write_synth(out, layout, num_train, num_val, size, num_seen, num_heldout, seed, num_colours=num_colours)
    click.echo(f"wrote {num_train} + {num_val} images ({num_seen} seen + {num_heldout} held-out classes + ground) to {root}")


@data.command("check")
@click.option("--dataset", required=True, help=_DATASETS)
@click.option("--data-root", required=True, type=click.Path(file_okay=False), help="the dataset's root folder")
@click.option("--split", type=click.Choice(["train", "val"]), default="val", show_default=True, help="which split")
@classes_option(f"{_DATASET_CLASSES}")
@quiet_option
def check(dataset, data_root, split, classes):
    """Read every image and mask of a split and report the bad ones (exit 1 if any)."""
    from segmentation.data.datasets import SegDataset

    ds = SegDataset(dataset, data_root, split, classes=classes, skip_bad=True)
    for path, reason in ds.skipped:
        click.echo(f"{path}: {reason}")
    click.echo(f"{len(ds)} good samples, {len(ds.skipped)} bad in {data_root} ({split})")
    if ds.skipped:
        raise ProlabError(f"{len(ds.skipped)} bad samples in {data_root} ({split})")


@data.command("subset-space", hidden=True)
@click.argument("artifact")
@classes_option("the classes to keep, in their order: a class list (built-in name, alias or file) or a "
                "descriptions JSON", required=True, name="classes_file")
@click.option("--name", required=True, help="name of the new artifact")
@out_dir_option("folder the new artifact directory goes in", required=True, old_names=("-o",))
@quiet_option
def subset_space(artifact, classes_file, name, out_dir):
    """Deprecated spelling of `prolab extend ARTIFACT --keep CLASSES`."""
    from prolab_cli.extend import run_extend

    click.echo("Warning: prolab data subset-space is deprecated; use prolab extend ARTIFACT --keep CLASSES "
               "--name NAME --out-dir DIR (the old command goes in the next release)", err=True)
    _, path, _ = run_extend(artifact, keep=classes_file, name=name, out_dir=out_dir)
    click.echo(f"wrote {path}")


@click.command()
@click.option("--dataset", default=None, help=f"{_DATASETS} (default: the config's)")
@click.option("--data-root", required=True, type=click.Path(file_okay=False), help="the dataset's root folder")
@click.option("--label-space", default=None, help="label-space artifact (directory or shipped name)")
@option("--preset", "preset", old_names=("--model",), default=None,
        help="model preset, e.g. vit-adapter-b, vit-adapter-nano  [default: the config's]")
@click.option("--config", "config_name", default=None,
              help="a training config of segmentation/configs (by name) or a YAML file  [default: ade20k-vit-adapter-b-prolab]")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a config key, e.g. optim.lr=1e-4")
@click.option("--head", type=click.Choice(["property", "onehot"]), default=None, help="property (ProLab) or onehot baseline")
@click.option("--work-dir", required=True, type=click.Path(file_okay=False), help="folder for checkpoints and logs")
@click.option("--resume", is_flag=True,
              help="continue from the work dir's newest checkpoint with its config (--set may change schedule.* "
                   "and logging keys, e.g. schedule.max_iters to extend the run)")
@click.option("--init-from", "init_from", default=None, type=click.Path(),
              help="start from this checkpoint's (file or run directory) model weights, with a fresh optimiser, "
                   "schedule and iteration count (mmseg's load_from; the BEiTv2-L 896 recipe needs it)")
@click.option("--overwrite", is_flag=True,
              help="start afresh in a work dir that holds checkpoints: the earlier run's checkpoints and log "
                   "are deleted when the new run finishes")
@classes_option(_DATASET_CLASSES)
@click.option("--skip-bad", is_flag=True, help="leave out bad samples (counted) instead of stopping")
@device_option
@threads_option
@click.option("--map-classes-by-name", is_flag=True,
              help="train a label space whose classes are some of the dataset's (matched by name; the dataset's "
                   "other classes are ignored and listed); without it the class lists must be equal")
@quiet_option
def train(dataset, data_root, label_space, preset, config_name, overrides, head, work_dir, resume, overwrite,
          init_from, classes, skip_bad, device, threads, map_classes_by_name):
    """Train a segmentation model (run under `torchrun` for several GPUs or nodes)."""
    _threads(threads)
    from segmentation.engine.config import load_config
    from segmentation.engine.train import train as run_train

    if resume:
        fixed = [flag for flag, value in (("--config", config_name), ("--dataset", dataset), ("--preset", preset),
                                          ("--head", head), ("--init-from", init_from)) if value]
        if fixed:
            raise ProlabError(f"--resume continues the checkpoint's config: {', '.join(fixed)} cannot change it")
    # the flags that edit the config are overrides after the user's own --set ones; each value is a
    # quoted YAML string, so that a path holding '#' or ': ' stays the path
    edits = [f"{key}={json.dumps(value)}" for key, value in (
        ("dataset", dataset), ("model.preset", preset), ("model.head", head),
        ("train.init_from", init_from and str(Path(init_from).resolve()))) if value]
    config = None if resume else load_config(config_name or "ade20k-vit-adapter-b-prolab")
    started = time.time()
    result = run_train(config, data_root, work_dir=work_dir, label_space=label_space, resume=resume,
                       overwrite=overwrite, overrides=[*overrides, *edits], device=device, classes=classes,
                       skip_bad=skip_bad, progress=not is_quiet(), map_classes_by_name=map_classes_by_name)
    _report_training(result, Path(work_dir), time.time() - started)


def _report_training(result: dict, work_dir: Path, seconds: float) -> None:
    """A readable summary on stdout; the same as JSON in ``<work_dir>/train_result.json``."""
    from segmentation.engine.distributed import is_rank_zero

    if not is_rank_zero():
        return
    from prolab_cli.atomic import write_json

    record = dict(result, seconds=round(seconds, 3), work_dir=str(work_dir))
    path = write_json(work_dir / "train_result.json", record)
    loss = result.get("loss")
    click.echo(f"trained {result['iterations']} iterations in {seconds:.1f} s"
               + (f", final loss {loss:.4f}" if isinstance(loss, (int, float)) else ""))
    click.echo(f"checkpoint: {result.get('checkpoint') or '(none written)'}")
    click.echo(f"summary:    {path}")


@click.command("eval")
@click.option("--checkpoint", required=True, type=click.Path(), help="checkpoint file or run directory")
@click.option("--dataset", default=None, help=f"{_DATASETS} (default: the one trained on)")
@click.option("--data-root", required=True, type=click.Path(file_okay=False), help="the dataset's root folder")
@click.option("--split", type=click.Choice(["train", "val"]), default="val", show_default=True, help="which split")
@click.option("--label-space", default=None, help="another artifact over the same centres (classes never trained on)")
@classes_option(_DATASET_CLASSES)
@inference_mode_option
@click.option("--flip/--no-flip", default=None, help="average with the flipped image")
@click.option("--scale", default=None, callback=_pair, help="test resize scale LONG,SHORT")
@click.option("--crop", default=None, callback=_pair, help="sliding-window size H,W")
@click.option("--stride", default=None, callback=_pair, help="sliding-window stride H,W")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="refuse images (and label maps) of more pixels than this [default: 50000000]")
@click.option("--skip-bad", is_flag=True, help="leave out bad samples (counted) instead of stopping")
@device_option
@threads_option
@output_option("JSON file to write the result to")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of the table")
@click.option("--map-classes-by-name", is_flag=True,
              help="cross-dataset evaluation: match the dataset's classes to the model's by name; dataset classes "
                   "without a row are ignored (printed and written in the result); without it the lists must be equal")
@quiet_option
def evaluate(checkpoint, dataset, data_root, split, label_space, classes, mode, flip, scale, crop, stride, max_pixels,
             skip_bad, device, threads, output, as_json, map_classes_by_name):
    """mIoU, mAcc, aAcc and the per-class table (as MMSegmentation computes them)."""
    _threads(threads)
    from segmentation.engine.distributed import is_rank_zero
    from segmentation.engine.evaluate import evaluate as run_eval
    from segmentation.engine.evaluate import format_settings
    from segmentation.engine.metrics import format_table

    result = run_eval(checkpoint, data_root, dataset=dataset, split=split, label_space=label_space, classes=classes,
                      mode=mode, flip=flip, scale=scale, crop=crop, stride=stride,
                      device=device, skip_bad=skip_bad, output=output, progress=not is_quiet(),
                      map_classes_by_name=map_classes_by_name, max_pixels=max_pixels)
    if not is_rank_zero():
        return
    for line in [*result["notes"], format_settings(result["settings"])]:
        click.echo(line, err=True)
    click.echo(json.dumps(result, indent=2) if as_json else format_table(result))


@click.command()
@click.argument("images", nargs=-1, type=click.Path())
@click.option("--checkpoint", required=True, type=click.Path(), help="checkpoint file or run directory")
@click.option("--label-space", default=None, help="another artifact over the same centres (or a shipped name)")
@option("--only", "classes", old_names=("--classes",), default=None,
        help="choose only among these classes of the model: a class list (built-in name, alias or file)")
@out_dir_option("folder for the masks, overlays and property maps", required=True, old_names=("--out",))
@inference_mode_option
@click.option("--flip/--no-flip", default=None, help="average with the flipped image")
@click.option("--regions", type=click.IntRange(min=1), default=3, show_default=True,
              help="largest predicted regions to explain")
@click.option("--top-properties", type=click.IntRange(min=1), default=3, show_default=True,
              help="property maps per region")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="refuse images of more pixels than this [default: 50000000]")
@device_option
@threads_option
@click.option("--map-classes-by-name", is_flag=True,
              help="allow a --label-space whose classes differ from the checkpoint's (label ids then number its classes)")
@quiet_option
def predict(images, checkpoint, label_space, classes, out_dir, mode, flip, regions, top_properties, max_pixels, device,
            threads, map_classes_by_name):
    """Colour mask, overlay and per-property activation maps for each image (IMAGES: files or folders)."""
    _threads(threads)
    from segmentation.engine.predict import predict as run_predict

    for summary in run_predict(_image_files(images), checkpoint, out_dir=out_dir, label_space=label_space,
                               classes=classes, mode=mode, flip=flip, regions=regions, top_properties=top_properties,
                               device=device, map_classes_by_name=map_classes_by_name,
                               **({"max_pixels": max_pixels} if max_pixels is not None else {})):
        parts = [f"{r['class']} {100 * r['area']:.0f}%" for r in summary["regions"]]
        click.echo(f"{summary['image']}: {', '.join(parts)}")
    click.echo(f"wrote to {out_dir}/: <image>_overlay.png (with a legend), <image>_mask.png, "
               "<image>_<class>_p<k>.png (property maps), <image>.json; raw class ids in labels/<image>.png")


_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _image_files(paths: tuple[str, ...]) -> list[Path]:
    """The files given, with each folder replaced by the images directly inside it (sorted)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
            if not found:
                raise ProlabError(f"{path}: no images ({', '.join(_IMAGE_SUFFIXES)}) in this folder")
            files += found
        elif not path.is_file():
            raise ProlabError(f"{path}: no such image file or folder")
        else:
            files.append(path)
    return files
