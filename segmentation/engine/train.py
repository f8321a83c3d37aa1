"""The training loop: AdamW + layer-wise lr decay, poly/warm-up, AMP, accumulation, DDP, exact resume."""

from __future__ import annotations

import contextlib
import math
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from prolab_cli.atomic import write_json
from prolab_cli.classes import check_class_list
from prolab_cli.errors import ProlabError
from prolab_cli.progress import progress_bar

from ..data.datasets import SegDataset
from ..data.transforms import TrainPipeline, collate
from ..label_space import load_label_space, resolve_artifact_path
from . import distributed as D
from .builder import build_for_head, model_kwargs_from_config, pick_device
from .checkpoint import checkpoint_header, load_checkpoint, rng_state, save_run_checkpoint, set_rng_state
from .config import TrainingConfig, apply_overrides, apply_resume_overrides, base_defaults, check_config, merge
from .init_from import init_from_checkpoint
from .logger import RunLogger
from .optim import PolyWarmup, build_optimizer
from .work_dir import work_dir_policy


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


@dataclass
class _Run:
    """Everything the loop needs, built once by :func:`_set_up`."""

    config: dict
    work_dir: Path
    rank: int
    world: int
    device: torch.device
    log: RunLogger
    model: torch.nn.Module
    ddp: torch.nn.Module  # the model, or its DDP wrapper: model(img, label) is the training step
    optimizer: torch.optim.Optimizer
    scheduler: PolyWarmup
    scaler: torch.amp.GradScaler | None
    autocast: Callable[[], Any]
    batches: Iterator[dict]
    start: int
    meta: dict
    bank: dict | None
    last_checkpoint: Path | None = None

    @property
    def max_iters(self) -> int:
        return int(self.config["schedule"]["max_iters"])

    @property
    def accum_steps(self) -> int:
        return int(self.config["train"]["accum_steps"])


def train(
    config: dict | TrainingConfig | None,
    data_root: str | Path,
    *,
    work_dir: str | Path,
    label_space: str | Path | None = None,
    resume: bool = False,
    device: str = "auto",
    classes: str | Path | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    on_iteration: Callable[[int, dict], None] | None = None,
    overrides: Sequence[str] = (),
    overwrite: bool = False,
    map_classes_by_name: bool = False,
) -> dict:
    """Train the model ``config`` describes; returns {"iterations", "checkpoint", "loss"}.

    ``config`` (a :class:`~.config.TrainingConfig` or its dict, as :func:`~.config.load_config`
    returns it) is checked against the schema; every argument after ``data_root`` is keyword-only.

    ``overrides`` (``key=value`` strings, applied in order) change ``config``. ``resume`` continues
    from ``work_dir``'s newest checkpoint with that checkpoint's config (``config`` is not used),
    and ``overrides`` may then change schedule and logging keys only (see
    :data:`~.config.RESUMABLE_KEYS`): raising ``schedule.max_iters`` extends a run, the poly
    schedule then following the new length from the resumed iteration. A work dir holding another
    run's checkpoints is refused unless ``resume`` or ``overwrite`` (:mod:`.work_dir`).
    ``on_iteration(it, record)`` is called after every optimiser step (benchmarks, tests).
    ``map_classes_by_name`` trains a label space whose classes are some of the dataset's (the
    others ignored); without it the class lists must be equal. A resumed run keeps its choice.
    """
    with work_dir_policy(work_dir, resume=resume, overwrite=overwrite, rank_zero=D.is_rank_zero()):
        run = _set_up(config, data_root, work_dir, label_space, resume, device, classes, skip_bad, overrides,
                      map_classes_by_name)
        record = _loop(run, progress, on_iteration)
    if run.rank == 0:
        run.log.message(f"trained {run.max_iters} iterations; checkpoint {run.last_checkpoint}")
    checkpoint = str(run.last_checkpoint) if run.last_checkpoint else None
    return {"iterations": run.max_iters, "checkpoint": checkpoint, "loss": record.get("loss")}


# --- set-up ------------------------------------------------------------------------------------

def _set_up(config, data_root, work_dir, label_space, resume, device, classes, skip_bad, overrides,
            map_classes_by_name: bool) -> _Run:
    """Config, label space, data, model, optimiser and loader of a fresh or resumed run.

    The order of the random draws (model initialisation, then the per-rank seed or the
    checkpoint's RNG state, then the loader's base seed) is what makes a resumed run
    bit-identical to an uninterrupted one; keep it when changing this function.
    """
    device = pick_device(device)
    rank, world, local_rank = D.init_distributed(device)
    work_dir = Path(work_dir)
    config, ckpt = _run_config(config, work_dir, resume, overrides)
    work_dir.mkdir(parents=True, exist_ok=True)
    log = RunLogger(work_dir, enabled=rank == 0)
    torch_device = torch.device(device, local_rank) if device == "cuda" else torch.device("cpu")
    mcfg, ocfg, scfg, tcfg = (config[k] for k in ("model", "optim", "schedule", "train"))
    head = mcfg["head"]
    if ckpt is not None and label_space is None:
        label_space = (ckpt["meta"].get("label_space") or {}).get("path")
    space = _checked_label_space(config, ckpt, label_space)
    if ckpt is not None:
        map_classes_by_name = map_classes_by_name or bool(ckpt["meta"].get("map_classes_by_name", False))
    dataset = _training_dataset(config, data_root, space, classes, skip_bad, map_classes_by_name, log)
    class_names = dataset.target_classes

    seed = int(tcfg["seed"])
    torch.manual_seed(seed)
    random.seed(seed)
    kwargs = model_kwargs_from_config(mcfg)
    # SyncBN needs CUDA; gloo/CPU process groups train with per-process BN statistics
    sync_bn = world > 1 and device == "cuda"
    model = build_for_head(mcfg["preset"], head, class_names, space, dict(kwargs, sync_bn=sync_bn)).to(torch_device)
    optimizer = build_optimizer(model, ocfg)
    scheduler = PolyWarmup(optimizer, int(scfg["max_iters"]), int(scfg["warmup_iters"]),
                           float(scfg["warmup_ratio"]), float(scfg["power"]),
                           float(scfg["min_lr"]), base_lr=float(ocfg["lr"]))
    autocast, use_scaler = _amp_context(tcfg["amp"], device, log)
    scaler = torch.amp.GradScaler("cuda", init_scale=float(tcfg["loss_scale"])) if use_scaler else None
    start = _load_initial_state(ckpt, model, optimizer, scaler, log, overrides)
    if ckpt is None:
        init_from_checkpoint(model, config, log.message)  # --init-from: weights only, before DDP wraps the model
        torch.manual_seed(seed + rank)
    ddp: torch.nn.Module = model
    if world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device == "cuda" else None)
    batches = _batches(dataset, config, seed, rank, world, start, device)
    if ckpt is not None:
        set_rng_state(ckpt["rng"])  # after the loader drew its base seed

    header = checkpoint_header(
        config["model"]["preset"], kwargs, config["model"]["head"], class_names, space, config["dataset"],
        model_config=model.config.to_dict() if getattr(model, "config", None) is not None else None,
        label_space_path=resolve_artifact_path(label_space) if space is not None else None)
    meta, bank = header["meta"], header["bank"]
    meta["map_classes_by_name"] = map_classes_by_name
    if rank == 0:
        write_json(work_dir / "config.json", config)
    return _Run(config=config, work_dir=work_dir, rank=rank, world=world, device=torch_device, log=log,
                model=model, ddp=ddp, optimizer=optimizer, scheduler=scheduler, scaler=scaler, autocast=autocast,
                batches=batches, start=start, meta=meta, bank=bank)


def _run_config(config: dict | None, work_dir: Path, resume: bool,
                overrides: Sequence[str]) -> tuple[dict, dict | None]:
    """The run's config (with ``overrides``) and, for ``resume``, the checkpoint it continues."""
    if resume:
        ckpt = load_checkpoint(work_dir)
        # a checkpoint written before a key existed holds none: that key takes its _base.yaml default
        config = merge(base_defaults(), ckpt["config"])
        return check_config(apply_resume_overrides(config, overrides), f"{ckpt['path']} config"), ckpt
    if config is None:
        raise ProlabError("train: a fresh run needs a config (or resume=True)")
    return check_config(apply_overrides(check_config(config), overrides)), None


def _checked_label_space(config: dict, ckpt: dict | None, label_space: str | Path | None) -> Any:
    """The run's label space (or None for the one-hot head), checked against the preset's K and
    against the label space a resumed run was trained with; a resumed run must have steps left."""
    head = config["model"]["head"]
    space = load_label_space(label_space)
    if head == "property" and space is None:
        raise ProlabError("the property head needs train.label_space ARTIFACT (or train.head onehot for the baseline)")
    want_k = config["label_space"]["num_properties"]
    if space is not None and head == "property" and want_k and space.num_properties != want_k:
        raise ProlabError(
            f"label space {space.name!r} has K={space.num_properties} properties but this preset uses "
            f"K={want_k} (override label_space.num_properties={space.num_properties} to train anyway)"
        )
    if ckpt is not None and space is not None:
        trained = ckpt["meta"].get("label_space") or {}
        if trained.get("version") and trained["version"] != space.version:
            raise ProlabError(
                f"{ckpt['path']}: trained with label space {trained.get('name')!r} version {trained['version']}, "
                f"not {space.name!r} version {space.version}"
            )
    if ckpt is not None and int(ckpt["iteration"]) >= int(config["schedule"]["max_iters"]):
        raise ProlabError(
            f"{ckpt['path']}: already trained {ckpt['iteration']} of schedule.max_iters="
            f"{config['schedule']['max_iters']} iterations (override schedule.max_iters=N to extend the run)"
        )
    return space


def _training_dataset(config: dict, data_root, space: Any, classes, skip_bad: bool, map_classes_by_name: bool,
                      log: RunLogger) -> SegDataset:
    """The augmented training split, its labels mapped to the label space's classes."""
    dcfg = config["data"]
    pipeline = TrainPipeline(
        scale=tuple(dcfg["scale"]), ratio_range=tuple(dcfg["ratio_range"]), crop_size=tuple(dcfg["crop_size"]),
        cat_max_ratio=float(dcfg["cat_max_ratio"]), photometric=bool(dcfg["photometric"]),
    )
    target = list(space.classes) if space is not None else None
    dataset = SegDataset(config["dataset"], data_root, "train", pipeline=pipeline, classes=classes,
                         target_classes=target, skip_bad=skip_bad)
    if space is not None:
        where = f"the {dataset.layout.name} dataset at {dataset.root} ({len(dataset.classes)} classes)"
        rec = check_class_list(space.classes, dataset.classes, what=f"label space {space.name!r}", where=where,
                               map_by_name=map_classes_by_name, by_name_field="train.map_classes_by_name")
        for line in rec.report_lines() if rec else []:
            log.message(f"map_classes_by_name: {line}")
    if dataset.skipped:
        first = dataset.skipped[0]
        log.message(f"skipped {len(dataset.skipped)} bad training samples (first: {first[0]}: {first[1]})")
    return dataset


def _load_initial_state(ckpt: dict | None, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scaler: torch.amp.GradScaler | None, log: RunLogger, resume_overrides: Sequence[str]) -> int:
    """Load the weights training starts from; returns the iteration it starts at.

    A resumed run takes weights, optimiser and loss-scaler state from its checkpoint (the lr
    schedule is the config's, set per iteration); a fresh run keeps the model's initialisation
    (pretrained backbone weights included) and starts at 0. Weights a fresh run starts from
    belong here, before DDP wraps the model and the optimiser takes its first step.
    """
    if ckpt is None:
        return 0
    model.load_state_dict(ckpt["state_dict"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    start = int(ckpt["iteration"])
    changed = f" with {', '.join(resume_overrides)}" if resume_overrides else ""
    log.message(f"resuming {ckpt['path']} at iteration {start}{changed}")
    return start


def _batches(dataset: SegDataset, config: dict, seed: int, rank: int, world: int, start: int,
             device: str) -> Iterator[dict]:
    """This rank's endless batch stream, positioned after the ``start`` optimiser steps already taken."""
    batch, accum = int(config["data"]["batch_size"]), int(config["train"]["accum_steps"])
    sampler = D.ResumableInfiniteSampler(len(dataset), seed, rank, world, start=start * batch * accum)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, sampler=sampler, num_workers=int(config["data"]["num_workers"]),
        collate_fn=collate, pin_memory=device == "cuda", drop_last=True,
    )
    return iter(loader)  # draws the loader's base seed


# --- the loop ----------------------------------------------------------------------------------

def _loop(run: _Run, progress: bool, on_iteration: Callable[[int, dict], None] | None) -> dict:
    """Optimiser steps from ``run.start`` to ``max_iters`` with logging and periodic checkpoints;
    the last step's record."""
    tcfg = run.config["train"]
    ckpt_every = int(tcfg["ckpt_interval"])
    reporter = _Reporter(run, progress, log_every=int(tcfg["log_interval"]))
    record: dict = {}
    run.model.train()
    try:
        for it in range(run.start, run.max_iters):
            record = _step(run, it)
            done = it + 1
            reporter.report(done, record)
            if on_iteration is not None:
                on_iteration(done, record)
            if done % ckpt_every == 0 or done == run.max_iters:
                _save_checkpoint(run, done)
    finally:
        reporter.close()
    return record


def _step(run: _Run, it: int) -> dict:
    """One optimiser step at iteration ``it`` over ``accum_steps`` micro-batches; its record
    (iter, lr, loss and its parts averaged over ranks, grad_norm when clipping)."""
    run.scheduler.step_to(it)
    totals = _accumulate_gradients(run)
    summary = torch.tensor([sum(totals.values())] + list(totals.values()), dtype=torch.float64, device=run.device)
    D.all_reduce_sum(summary)
    summary /= run.world
    loss_value = float(summary[0])
    if not math.isfinite(loss_value):
        last = run.last_checkpoint
        where = f"; the last good checkpoint is {last}" if last else "; no checkpoint was written yet"
        raise ProlabError(f"loss is {loss_value} at iteration {it + 1}: training stopped{where}")
    grad_norm = _apply_gradients(run)
    record = {"iter": it + 1, "lr": run.optimizer.param_groups[-1]["lr"], "loss": loss_value,
              **{k: float(v) for k, v in zip(totals, summary[1:].tolist())}}
    if grad_norm is not None:
        record["grad_norm"] = grad_norm
    return record


def _accumulate_gradients(run: _Run) -> dict[str, float]:
    """Forward and backward ``accum_steps`` micro-batches (DDP syncs on the last); this rank's
    mean of each loss term."""
    accum = run.accum_steps
    totals: dict[str, float] = {}
    for micro in range(accum):
        data = _next_batch(run.batches)
        img = data["img"].to(run.device, non_blocking=True)
        label = data["label"].to(run.device, non_blocking=True)
        sync = contextlib.nullcontext() if (run.world == 1 or micro == accum - 1) else run.ddp.no_sync()
        with sync:
            with run.autocast():
                losses = run.ddp(img, label)
            loss = sum(losses.values()) / accum
            (run.scaler.scale(loss) if run.scaler is not None else loss).backward()
        for key, value in losses.items():
            totals[key] = totals.get(key, 0.0) + float(value.detach()) / accum
    return totals


def _apply_gradients(run: _Run) -> float | None:
    """Clip (when ``optim.grad_clip`` is set), step and zero the gradients; the pre-clip norm."""
    grad_clip = run.config["optim"]["grad_clip"]
    if run.scaler is not None:
        run.scaler.unscale_(run.optimizer)
    grad_norm = None
    if grad_clip:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(run.model.parameters(), float(grad_clip)))
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return grad_norm


# --- checkpoints -------------------------------------------------------------------------------

def _save_checkpoint(run: _Run, it: int) -> None:
    """Rank 0 writes ``iter_<it>.pth`` with everything an exact resume needs; all ranks wait."""
    if run.rank == 0:
        state = {
            "state_dict": run.model.state_dict(), "meta": run.meta, "bank": run.bank, "iteration": it,
            "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler is not None else None,
            "rng": rng_state(), "config": run.config,
        }
        run.last_checkpoint = save_run_checkpoint(run.work_dir, it, state, int(run.config["train"]["max_keep"]))
    D.barrier()


# --- logging -----------------------------------------------------------------------------------

class _Reporter:
    """Rank 0's progress bar and every ``log_every``-th record (with seconds per iteration) in the run log."""

    def __init__(self, run: _Run, progress: bool, log_every: int):
        self.log, self.log_every, self.max_iters = run.log, log_every, run.max_iters
        self.bar = progress_bar(run.max_iters, "train", "it", run.rank == 0 and progress, initial=run.start)
        self.tick, self.tick_iter = time.time(), run.start

    def report(self, done: int, record: dict) -> None:
        """Show iteration ``done``; log its record when it is due (adds ``sec_per_iter``)."""
        self.bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
        self.bar.update(1)
        if done % self.log_every == 0 or done == self.max_iters:
            now = time.time()
            record["sec_per_iter"] = (now - self.tick) / (done - self.tick_iter)
            self.tick, self.tick_iter = now, done
            self.log.log(record)

    def close(self) -> None:
        """Close the bar and flush the log."""
        self.bar.close()
        self.log.close()


def _next_batch(batches: Iterator[dict]) -> dict:
    """The next batch; a bad sample's error raised in a loader worker keeps its one-line message
    (the worker's traceback is dropped) and its class."""
    try:
        return next(batches)
    except ProlabError as exc:
        lines = exc.message.strip().splitlines()
        if len(lines) <= 1:  # raised in this process: already one line
            raise
        raise type(exc)(_WORKER_PREFIX.sub("", lines[-1], count=1)) from None


# the last line of a worker's traceback: "prolab_cli.errors.InputError: <message>"
_WORKER_PREFIX = re.compile(r"^(?:[\w.]+\.)?\w*Error: ")
