"""Starting a run from another run's model weights (mmseg's ``load_from``): the released BEiTv2-L
recipe fine-tunes for 80k iterations from a 160k run of the same config."""

from __future__ import annotations

from typing import Callable

import torch

from prolab_cli.errors import ProlabError

from .checkpoint import load_checkpoint


def init_from_checkpoint(model: torch.nn.Module, config: dict, say: Callable[[str], None] = print) -> str | None:
    """Load ``config["train"]["init_from"]``'s model weights into ``model`` (not its optimiser,
    schedule or iteration: those start fresh). Refuses a config with ``schedule.init_from_required``
    and no checkpoint, and a checkpoint whose head, keys or shapes differ. Returns the path loaded."""
    path = config["train"]["init_from"]
    if not path:
        if config["schedule"]["init_from_required"]:
            raise ProlabError(
                "this preset fine-tunes the weights of an earlier run (the released recipe's load_from): give "
                "train.init_from CHECKPOINT, or the override schedule.init_from_required=false to train that earlier run")
        return None
    ckpt = load_checkpoint(path)
    head = "property" if getattr(model, "is_property_head", False) else "onehot"
    if ckpt["meta"].get("head") != head:
        raise ProlabError(f"{ckpt['path']}: a {ckpt['meta'].get('head')}-head model cannot start a {head}-head run")
    if head == "property":
        theirs_basis = (ckpt["meta"].get("model_kwargs") or {}).get("bank_basis", "embedding")
        if theirs_basis != model.bank.basis:
            raise ProlabError(f"{ckpt['path']}: trained with model.bank_basis={theirs_basis}, this run has "
                              f"{model.bank.basis}")
    if head == "property" and ckpt.get("bank") is not None:
        theirs_c = torch.nn.functional.normalize(ckpt["bank"]["centres"].float(), dim=1)
        ours_c = model.bank.centres.detach().float().cpu()
        if theirs_c.shape != ours_c.shape or not torch.allclose(theirs_c, ours_c, atol=1e-6):
            raise ProlabError(f"{ckpt['path']}: trained over other property centres than this run's label space")
    own = model.state_dict()
    theirs = ckpt["state_dict"]
    missing = [k for k in own if k not in theirs]
    unexpected = [k for k in theirs if k not in own]
    bad = [f"{k} {tuple(theirs[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
           if k in theirs and tuple(theirs[k].shape) != tuple(v.shape)]
    if missing or unexpected or bad:
        first = (bad or [f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"])[0]
        raise ProlabError(f"{ckpt['path']}: its weights do not fit this model ({len(missing)} missing, "
                          f"{len(unexpected)} unexpected, {len(bad)} shapes differ; first: {first})")
    model.load_state_dict(theirs)
    iteration = ckpt.get("iteration")
    say(f"initialised the model from {ckpt['path']}" + (f" (iteration {iteration} of its run)" if iteration else "")
        + "; optimiser, schedule and iteration start fresh")
    return ckpt["path"]
