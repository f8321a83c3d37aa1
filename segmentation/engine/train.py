"""The training loop: AdamW + layer-wise lr decay, poly/warm-up, AMP, accumulation, DDP, exact resume."""

from __future__ import annotations

import contextlib
import math
import random
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from prolab_cli.atomic import write_json
from prolab_cli.classes import class_list_difference, reconcile_class_names
from prolab_cli.errors import ProlabError
from prolab_cli.progress import progress_bar

from ..data.datasets import SegDataset
from ..data.transforms import TrainPipeline, collate
from . import distributed as D
from .builder import build_model, load_label_space, model_kwargs_from_config, pick_device
from .checkpoint import bank_of, load_checkpoint, make_meta, rng_state, save_run_checkpoint, set_rng_state
from .config import apply_resume_overrides
from .init_from import init_from_checkpoint
from .logger import RunLogger
from .optim import PolyWarmup, build_optimizer


def _check_classes(space_classes: list[str], dataset: SegDataset, what: str, map_by_name: bool,
                   log: RunLogger) -> None:
    """Refuse a label space whose class list is not the dataset's (same names, same order), unless
    ``map_by_name``: then its classes must be dataset classes, and the dataset classes it lacks
    (ignored in training) are reported."""
    where = f"the {dataset.layout.name} dataset at {dataset.root} ({len(dataset.classes)} classes)"
    if not map_by_name:
        diff = class_list_difference(space_classes, dataset.classes)
        if diff:
            raise ProlabError(
                f"{what}: its class list differs from {where} at {diff} (use a label space made for this "
                "dataset's class list, or --map-classes-by-name to train on the classes they share)"
            )
        return
    rec = reconcile_class_names(space_classes, dataset.classes, source=what, partial=True)
    if rec.unmatched:
        raise ProlabError(f"{what}: classes {rec.unmatched[:5]} are not classes of {where}")
    for line in rec.report_lines():
        log.message(f"--map-classes-by-name: {line}")


def _amp_context(amp: str, device: str, log: RunLogger) -> tuple[Callable[[], Any], bool]:
    if amp in (None, "none", False):
        return contextlib.nullcontext, False
    if amp not in ("fp16", "bf16"):
        raise ProlabError(f"train.amp {amp!r}: expected none, fp16 or bf16")
    if amp == "fp16" and device != "cuda":
        log.message("train.amp=fp16 needs CUDA: this CPU run trains in fp32 (set train.amp=bf16 or none to silence)")
        return contextlib.nullcontext, False
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    return (lambda: torch.autocast(device_type=device, dtype=dtype)), amp == "fp16"


def train(
    config: dict | None,
    data_root: str | Path,
    work_dir: str | Path,
    label_space: str | Path | None = None,
    resume: bool = False,
    device: str = "auto",
    classes: str | Path | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    on_iteration: Callable[[int, dict], None] | None = None,
    resume_overrides: Sequence[str] = (),
    map_classes_by_name: bool = False,
) -> dict:
    """Train the model ``config`` describes; returns {"iterations", "checkpoint", "loss"}.

    ``resume`` continues from ``work_dir``'s newest checkpoint with that checkpoint's config
    (``config`` is not used), updated by ``resume_overrides`` (``--set`` strings; schedule and
    logging keys only, see :data:`~.config.RESUMABLE_KEYS`): raising ``schedule.max_iters``
    extends a run, the poly schedule then following the new length from the resumed iteration.
    ``on_iteration(it, record)`` is called after every optimiser step (benchmarks, tests).
    ``map_classes_by_name`` trains a label space whose classes are some of the dataset's (the
    others ignored); without it the class lists must be equal. A resumed run keeps its choice.
    """
    device = pick_device(device)
    rank, world, local_rank = D.init_distributed(device)
    work_dir = Path(work_dir)
    ckpt = None
    if resume:
        ckpt = load_checkpoint(work_dir)
        config = apply_resume_overrides(ckpt["config"], resume_overrides)
    elif resume_overrides:
        raise ProlabError("resume_overrides are for resume=True; a fresh run's config carries its overrides")
    work_dir.mkdir(parents=True, exist_ok=True)
    log = RunLogger(work_dir, enabled=rank == 0)
    torch_device = torch.device(device, local_rank) if device == "cuda" else torch.device("cpu")

    mcfg, dcfg, ocfg, scfg, tcfg = (config[k] for k in ("model", "data", "optim", "schedule", "train"))
    head = mcfg.get("head", "property")
    if ckpt is not None and label_space is None:
        label_space = (ckpt["meta"].get("label_space") or {}).get("path")
    space = load_label_space(label_space)
    if head == "property" and space is None:
        raise ProlabError("the property head needs --label-space ARTIFACT (or --head onehot for the baseline)")
    want_k = (config.get("label_space") or {}).get("num_properties")
    if space is not None and head == "property" and want_k and space.num_properties != want_k:
        raise ProlabError(
            f"label space {space.name!r} has K={space.num_properties} properties but this preset uses "
            f"K={want_k} (--set label_space.num_properties={space.num_properties} to train anyway)"
        )
    if ckpt is not None and space is not None:
        trained = ckpt["meta"].get("label_space") or {}
        if trained.get("version") and trained["version"] != space.version:
            raise ProlabError(
                f"{ckpt['path']}: trained with label space {trained.get('name')!r} version {trained['version']}, "
                f"not {space.name!r} version {space.version}"
            )
    if ckpt is not None and int(ckpt["iteration"]) >= int(scfg["max_iters"]):
        raise ProlabError(
            f"{ckpt['path']}: already trained {ckpt['iteration']} of schedule.max_iters={scfg['max_iters']} "
            "iterations (--set schedule.max_iters=N to extend the run)"
        )

    pipeline = TrainPipeline(
        scale=tuple(dcfg["scale"]), ratio_range=tuple(dcfg["ratio_range"]), crop_size=tuple(dcfg["crop_size"]),
        cat_max_ratio=float(dcfg["cat_max_ratio"]), photometric=bool(dcfg.get("photometric", True)),
    )
    target = list(space.classes) if space is not None else None
    dataset = SegDataset(config["dataset"], data_root, "train", pipeline=pipeline, classes=classes,
                         target_classes=target, skip_bad=skip_bad)
    if ckpt is not None:
        map_classes_by_name = map_classes_by_name or bool(ckpt["meta"].get("map_classes_by_name", False))
    if space is not None:
        _check_classes(space.classes, dataset, f"label space {space.name!r}", map_classes_by_name, log)
    if dataset.skipped:
        log.message(f"skipped {len(dataset.skipped)} bad training samples (first: {dataset.skipped[0][0]}: {dataset.skipped[0][1]})")
    class_names = dataset.target_classes

    seed = int(tcfg.get("seed", 0))
    torch.manual_seed(seed)
    random.seed(seed)
    kwargs = model_kwargs_from_config(mcfg)
    # SyncBN needs CUDA; gloo/CPU process groups train with per-process BN statistics
    sync_bn = world > 1 and device == "cuda"
    model = build_model(mcfg["preset"], head, class_names, space, dict(kwargs, sync_bn=sync_bn)).to(torch_device)
    if ckpt is None:
        init_from_checkpoint(model, config, log.message)
    optimizer = build_optimizer(model, ocfg)
    scheduler = PolyWarmup(optimizer, int(scfg["max_iters"]), int(scfg.get("warmup_iters", 0)),
                           float(scfg.get("warmup_ratio", 1e-6)), float(scfg.get("power", 1.0)),
                           float(scfg.get("min_lr", 0.0)), base_lr=float(ocfg["lr"]))
    autocast, use_scaler = _amp_context(tcfg.get("amp", "none"), device, log)
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None

    start = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])  # the schedule is the config's, set per iteration
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start = int(ckpt["iteration"])
        changed = f" with {', '.join(resume_overrides)}" if resume_overrides else ""
        log.message(f"resuming {ckpt['path']} at iteration {start}{changed}")
    else:
        torch.manual_seed(seed + rank)
    ddp: torch.nn.Module = model  # model(img, label) is the training step, so DDP's hooks see it
    if world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device == "cuda" else None)

    batch, accum = int(dcfg["batch_size"]), int(tcfg.get("accum_steps", 1))
    sampler = D.ResumableInfiniteSampler(len(dataset), seed, rank, world, start=start * batch * accum)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, sampler=sampler, num_workers=int(dcfg.get("num_workers", 0)),
        collate_fn=collate, pin_memory=device == "cuda", drop_last=True,
    )
    batches = iter(loader)  # draws the loader's base seed before RNG state is restored below
    if ckpt is not None:
        set_rng_state(ckpt["rng"])

    meta = make_meta(mcfg["preset"], kwargs, head, class_names, space, config["dataset"])
    meta["model_config"] = model.config.to_dict() if getattr(model, "config", None) is not None else None
    if meta["label_space"] is not None:
        from prolab_cli.artifact import resolve_artifact_path

        meta["label_space"]["path"] = str(resolve_artifact_path(label_space).resolve())
    meta["property_names"] = list(space.property_names) if space is not None and head == "property" else None
    meta["map_classes_by_name"] = map_classes_by_name
    bank = bank_of(space) if head == "property" else None

    def checkpoint(it: int) -> Path | None:
        if rank != 0:
            return None
        state = {
            "state_dict": model.state_dict(), "meta": meta, "bank": bank, "iteration": it,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_state(), "config": config,
        }
        return save_run_checkpoint(work_dir, it, state, int(tcfg.get("max_keep", 2)))

    if rank == 0:
        write_json(work_dir / "config.json", config)
    max_iters = int(scfg["max_iters"])
    grad_clip = ocfg.get("grad_clip")
    log_every, ckpt_every = int(tcfg.get("log_interval", 50)), int(tcfg.get("ckpt_interval", 1000))
    bar = progress_bar(max_iters, "train", "it", rank == 0 and progress, initial=start)
    last_path: Path | None = None
    record: dict = {}
    model.train()
    tick, tick_iter = time.time(), start
    try:
        for it in range(start, max_iters):
            scheduler.step_to(it)
            totals: dict[str, float] = {}
            for micro in range(accum):
                data = _next_batch(batches)
                img = data["img"].to(torch_device, non_blocking=True)
                label = data["label"].to(torch_device, non_blocking=True)
                sync = contextlib.nullcontext() if (world == 1 or micro == accum - 1) else ddp.no_sync()
                with sync:
                    with autocast():
                        losses = ddp(img, label)
                    loss = sum(losses.values()) / accum
                    (scaler.scale(loss) if scaler is not None else loss).backward()
                for key, value in losses.items():
                    totals[key] = totals.get(key, 0.0) + float(value.detach()) / accum
            summary = torch.tensor([sum(totals.values())] + list(totals.values()), dtype=torch.float64, device=torch_device)
            D.all_reduce_sum(summary)
            summary /= world
            loss_value = float(summary[0])
            if not math.isfinite(loss_value):
                where = f"; the last good checkpoint is {last_path}" if last_path else "; no checkpoint was written yet"
                raise ProlabError(f"loss is {loss_value} at iteration {it + 1}: training stopped{where}")
            if scaler is not None:
                scaler.unscale_(optimizer)
            grad_norm = None
            if grad_clip:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), float(grad_clip)))
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done = it + 1
            lr = optimizer.param_groups[-1]["lr"]
            record = {"iter": done, "lr": lr, "loss": loss_value,
                      **{k: float(v) for k, v in zip(totals, summary[1:].tolist())}}
            if grad_norm is not None:
                record["grad_norm"] = grad_norm
            if bar is not None:
                bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}")
                bar.update(1)
            if done % log_every == 0 or done == max_iters:
                now = time.time()
                record["sec_per_iter"] = (now - tick) / (done - tick_iter)
                tick, tick_iter = now, done
                log.log(record)
            if on_iteration is not None:
                on_iteration(done, record)
            if done % ckpt_every == 0 or done == max_iters:
                last_path = checkpoint(done) or last_path
                D.barrier()
    finally:
        if bar is not None:
            bar.close()
        log.close()
    if rank == 0:
        log.message(f"trained {max_iters} iterations; checkpoint {last_path}")
    return {"iterations": max_iters, "checkpoint": str(last_path) if last_path else None, "loss": record.get("loss")}


def _next_batch(batches) -> dict:
    """The next batch; a bad sample's error raised in a loader worker keeps its one-line message."""
    try:
        return next(batches)
    except ProlabError as exc:
        last = exc.message.strip().splitlines()[-1]
        raise ProlabError(last.split("ProlabError: ", 1)[-1]) from None

