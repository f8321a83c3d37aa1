"""Converting released mmseg 0.x checkpoints (ViT-Adapter / ProLab) into prolab checkpoints."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from prolab_cli.classes import check_class_list, load_classes
from prolab_cli.errors import ProlabError
from prolab_cli.progress import progress_bar
from prolab_cli.torch_files import numpy_array_globals

from ..label_space import label_space_from_bank, load_label_space, read_released_bank
from ..models.checkpoint_io import extract_state_dict, read_checkpoint
from ..models.registry import MODELS, ModelConfig, build_model, model_config
from .builder import model_kwargs_from_config
from .checkpoint import checkpoint_header, save_checkpoint
from .config import load_config
from .row_match import NAMED, match_row, row_architecture, state_shapes

_MMSEG_META_KEYS = ("CLASSES", "mmcv_version", "mmseg_version", "iter", "epoch", "time")


@dataclass
class ConvertReport:
    """What ``convert_checkpoint`` did: the model it built and the keys it could not place."""

    output: Path
    preset: str | None
    config: ModelConfig
    head: str
    classes: list[str]
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)
    row: str | None = None                       # the paper row the checkpoint is (segmentation.zoo)
    evidence: list[str] = field(default_factory=list)
    settings: str | None = None                  # what `prolab eval` will use

    def lines(self) -> list[str]:
        """Human-readable summary."""
        name = self.preset or "custom config"
        how = "named" if self.evidence[:1] == [NAMED] else "inferred"
        out = [f"wrote {self.output} ({name}, {self.head} head, {len(self.classes)} classes)",
               f"row {self.row} ({how}; {'; '.join(e for e in self.evidence if e != NAMED)})"
               if self.row else "no paper row: eval needs the dataset named (and uses whole-image defaults)",
               f"eval will use: {self.settings}" if self.settings else None,
               f"filled {len(self.filled)} relative_position_index buffers from the model" if self.filled else None,
               f"missing keys ({len(self.missing)}): {', '.join(self.missing)}" if self.missing else "missing keys: none",
               f"unexpected keys ({len(self.unexpected)}, dropped): {', '.join(self.unexpected)}"
               if self.unexpected else "unexpected keys: none"]
        return [line for line in out if line]


def _plain_meta(meta: dict) -> dict:
    """The informative mmseg meta fields as plain Python values (numpy scalars would make our
    checkpoint unreadable with ``weights_only=True``)."""
    out: dict[str, Any] = {}
    for key in _MMSEG_META_KEYS:
        value = meta.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (str, int, float)):
            out[key] = value if isinstance(value, str) else (int(value) if isinstance(value, int) else float(value))
        elif hasattr(value, "item") and getattr(value, "shape", None) == ():
            out[key] = value.item()
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            out[key] = [str(v) for v in value]
    return out


class _MMEngineRecord:
    """Stands in for the mmengine objects an MMSeg 1.x checkpoint pickles (the message hub's
    HistoryBuffer records), so its weights read without mmengine and without trusting pickle."""


def _mmengine_record_getattr(obj: Any, name: str) -> Any:
    if obj is _MMEngineRecord and name in ("min", "max", "current", "mean"):
        return name  # a HistoryBuffer statistics method; convert needs only the weights
    raise ProlabError(f"checkpoint asks for getattr({type(obj).__name__}, {name!r}); not allowed")


def _mmseg1_globals() -> list:
    """What torch.load(weights_only=True) needs for an MMSeg 1.x (mmengine) checkpoint."""
    return [(_MMEngineRecord, "mmengine.logging.history_buffer.HistoryBuffer"),
            (_mmengine_record_getattr, "builtins.getattr"), *numpy_array_globals()]


def _fit_beit_window(cfg: ModelConfig, sd: dict[str, torch.Tensor], patch_size: int = 16) -> ModelConfig:
    """A BEiT ``cfg`` with the input size whose window gives the state dict's relative-position
    table ((2w-1)^2 + 3 rows); other configs, or a state dict without the table, unchanged."""
    table = sd.get("backbone.blocks.0.attn.relative_position_bias_table")
    if cfg.backbone != "beit" or table is None:
        return cfg
    return replace(cfg, img_size=(int(round((table.shape[0] - 3) ** 0.5)) + 1) // 2 * patch_size)


def _head_channels(sd: dict[str, torch.Tensor], where: str) -> int:
    w = sd.get("decode_head.conv_seg.weight")
    if w is None:
        raise ProlabError(f"{where}: no decode_head.conv_seg.weight (not a UperNet segmentor checkpoint)")
    return int(w.shape[0])


def infer_config(sd: dict[str, torch.Tensor], where: str = "checkpoint") -> tuple[str, ModelConfig]:
    """The preset whose keys and shapes equal the state dict's (BEiT window size read from the
    relative position table)."""
    is_beit = "backbone.blocks.0.attn.relative_position_bias_table" in sd
    out = _head_channels(sd, where)
    want = state_shapes(sd)
    for name, cfg in MODELS.items():
        if is_beit != (cfg.backbone == "beit"):
            continue
        cfg = _fit_beit_window(cfg, sd)
        model = build_model(cfg, num_classes=out, device="meta")
        if state_shapes(model.state_dict()) == want:
            return name, cfg
    raise ProlabError(f"{where}: keys/shapes match no registered model ({', '.join(MODELS)}); give convert.preset")


def _bank_entries(raw: dict) -> dict[str, tuple[int, int]]:
    """{entry key: (K, C)} of the ``[centres [D,K], multi-hot [K,C]]`` entries of a loaded bank."""
    out = {}
    for key, value in raw.items():
        if isinstance(key, str) and isinstance(value, (list, tuple)) and len(value) == 2:
            shapes = [tuple(getattr(t, "shape", ())) for t in value]
            if all(len(s) == 2 for s in shapes) and shapes[0][1] == shapes[1][0]:
                out[key] = shapes[1]
    return out


def _row_bank_key(row: Any, entries: dict[str, tuple[int, int]], where: str) -> str:
    """The entry of a bank that holds ``row``'s label space: the row's own key, else the only
    entry of its K and class count."""
    if row.bank_key in entries:
        return row.bank_key
    fitting = [k for k, kc in entries.items() if kc == (row.num_properties, row.num_classes)]
    if len(fitting) == 1:
        return fitting[0]
    raise ProlabError(f"{where}: no entry {row.bank_key!r} and {len(fitting)} entries with K={row.num_properties}, "
                      f"{row.num_classes} classes (entries: {', '.join(sorted(entries)) or 'none'}); give convert.bank_key")


def head_settings_from_mmseg_cfg(cfg_text: Any) -> dict:
    """``temperature`` and ``normalize_embedding`` of the decode head in the config text an MMSeg 1.x
    checkpoint carries (``meta.cfg``, written by mmengine's Runner with the ProLab plugin heads);
    {} when there is none. Read with ``ast`` (literals only), so the core never imports mmengine."""
    import ast

    if not isinstance(cfg_text, str):
        return {}
    try:
        tree = ast.parse(cfg_text)
    except SyntaxError:
        return {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.keyword) and node.arg == "decode_head" and isinstance(node.value, ast.Call)):
            continue
        found = {}
        for kw in node.value.keywords:
            if kw.arg in ("temperature", "normalize_embedding") and isinstance(kw.value, ast.Constant):
                found[kw.arg] = kw.value.value
        return found
    return {}


def eval_settings_summary(config: dict, space: Any = None) -> str:
    """One line of what `prolab eval` will use for a converted checkpoint's config."""
    m, t = config["model"], config["test"]
    k = f"K {space.num_properties}, " if space is not None else ""
    return (f"dataset {config['dataset']}, {t['mode']} {t['crop_size'][0]}/{t['stride'][0]}, scale {tuple(t['scale'])}, "
            f"size_divisor {t.get('size_divisor')}, pad short side {t.get('pad_short_side')}, {k}T {m['temperature']:g}, "
            f"embedding {'normalised' if m['normalize_embedding'] else 'not normalised'}")


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, preset: str | ModelConfig | None = None,
                       label_space: str | os.PathLike | None = None, classes: list[str] | None = None,
                       temperature: float | None = None, normalize_embedding: bool | None = None,
                       allow_missing: bool = False, trust_pickle: bool = False, row: str | None = None,
                       bank: str | os.PathLike | None = None, bank_key: str | None = None) -> ConvertReport:
    """Load an mmseg 0.x or 1.x ``.pth`` (``state_dict``/``meta``, optional ``module.`` prefixes, BEiT
    ``relative_position_index`` buffers possibly absent) into our model and write a prolab
    checkpoint (``segmentation.engine.checkpoint`` format).

    A paper row (``row``, else inferred from the keys, the label space and mmseg's meta; an ambiguous
    inference is an error) makes the checkpoint self-describing: dataset, classes, the row's resolved
    preset (``config``, with its test settings) and its T / normalisation, so `prolab eval` needs no
    other option. A label space (``label_space`` artifact or ``bank`` .pth with entry ``bank_key``) makes
    it a property-head model (its D must equal the head's output channels); outside a row the property
    head needs an explicit ``temperature``. Missing keys are an error unless ``allow_missing``;
    unexpected keys are reported and dropped. ``trust_pickle`` allows unpickling arbitrary objects.
    """
    where = str(src)
    if label_space is not None and bank is not None:
        raise ProlabError("give convert.label_space or convert.bank, not both")
    bar = progress_bar(4, f"convert {Path(src).name}", "step")  # read, build, load, write
    with torch.serialization.safe_globals(_mmseg1_globals()):
        ckpt = read_checkpoint(src, trust_pickle)
    bar.update(1)
    sd = extract_state_dict(ckpt, where)
    mmseg_meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), dict) else {}
    space = load_label_space(label_space) if label_space is not None else None
    raw_bank = read_released_bank(bank, trust_pickle) if bank is not None else None
    entries = _bank_entries(raw_bank) if raw_bank is not None else None
    match = match_row(sd, where, row, space, mmseg_meta, entries, bank_key)
    source = _Source(where, sd, mmseg_meta, raw_bank, entries, str(bank) if bank is not None else None, bank_key, classes)
    if match is not None:
        plan = _plan_for_row(match.row, source, space, preset, temperature, normalize_embedding)
    else:
        plan = _plan_outside_rows(source, space, row, preset, temperature, normalize_embedding)
    model, head, names = _build(plan, source)
    bar.update(1)
    missing, unexpected, filled = _load_weights(model, sd, where, allow_missing)
    bar.update(1)

    dataset = plan.config["dataset"] if plan.config is not None else None
    header = checkpoint_header(plan.preset_name or "custom", plan.kwargs, head, names, plan.space, dataset,
                               model_config=plan.cfg.to_dict())
    header["meta"]["row"] = match.row.id if match is not None else None
    header["meta"]["source"] = {"path": str(Path(src).resolve()), "missing": missing, "unexpected": unexpected,
                                **_plain_meta(mmseg_meta)}
    payload: dict[str, Any] = {"state_dict": model.state_dict(), **header}
    if plan.config is not None:
        payload["config"] = plan.config
    path = save_checkpoint(dst, payload)
    bar.update(1)
    bar.close()
    report = ConvertReport(path, plan.preset_name, plan.cfg, head, names, missing, unexpected, filled)
    if match is not None:
        report.row = match.row.id
        report.evidence = match.evidence
        report.settings = eval_settings_summary(plan.config, plan.space)
    return report


@dataclass
class _Source:
    """What the released file (and the bank beside it) hold, read once."""

    where: str
    state_dict: dict
    mmseg_meta: dict
    raw_bank: Any
    bank_entries: dict | None
    bank_path: str | None
    bank_key: str | None
    classes: list[str] | None


@dataclass
class _Plan:
    """The model a converted checkpoint becomes: architecture, label space, head settings, config."""

    preset_name: str | None
    cfg: ModelConfig
    space: Any
    kwargs: dict
    config: dict | None = None


def _plan_for_row(the_row: Any, source: _Source, space: Any, preset: Any, temperature: float | None,
                  normalize_embedding: bool | None) -> _Plan:
    """A paper row's checkpoint: the row's config, its label space (checked against the row's
    dataset) and its T / normalisation unless given."""
    preset_name, cfg = row_architecture(the_row.id)
    if preset is not None and preset != preset_name:
        raise ProlabError(f"convert.preset {preset} contradicts row {the_row.id} (model {preset_name})")
    config = load_config(the_row.id)
    if source.raw_bank is not None:
        key = source.bank_key or _row_bank_key(the_row, source.bank_entries, source.bank_path)
        space = label_space_from_bank(source.raw_bank, the_row.label_space, key=key,
                                      classes=source.classes or load_classes(the_row.dataset), source=source.bank_path)
    if space is None:
        raise ProlabError(f"row {the_row.id} is a ProLab model: give convert.bank embeddings/{the_row.bank_file} "
                          f"(entry {the_row.bank_key}) or convert.label_space ARTIFACT")
    check_class_list(space.classes, load_classes(the_row.dataset), what=f"label space {space.name!r}",
                     where=f"the {the_row.dataset} dataset's")
    if temperature is not None:
        config["model"]["temperature"] = float(temperature)
    if normalize_embedding is not None:
        config["model"]["normalize_embedding"] = bool(normalize_embedding)
    return _Plan(preset_name, cfg, space, model_kwargs_from_config(config["model"]), config)


def _plan_outside_rows(source: _Source, space: Any, row: str | None, preset: Any, temperature: float | None,
                       normalize_embedding: bool | None) -> _Plan:
    """A checkpoint of no paper row: the architecture named or inferred from the keys; a property
    head takes T from the argument or from the config text mmseg stored, else it is refused."""
    if row is None and preset is None:
        preset_name, cfg = infer_config(source.state_dict, source.where)
    elif isinstance(preset, ModelConfig):
        preset_name, cfg = None, preset
    else:
        preset_name, cfg = preset, _fit_beit_window(model_config(preset), source.state_dict)
    if source.raw_bank is not None:
        space = label_space_from_bank(source.raw_bank, Path(source.bank_path).stem, key=source.bank_key,
                                      classes=source.classes, source=source.bank_path)
    kwargs: dict = {}
    if space is not None:
        recorded = head_settings_from_mmseg_cfg(source.mmseg_meta.get("cfg"))
        temperature = recorded.get("temperature") if temperature is None else temperature
        if normalize_embedding is None:
            normalize_embedding = recorded.get("normalize_embedding", False)
        if temperature is None:
            raise ProlabError(f"{source.where}: fits no paper row (see `prolab zoo`), so T is unknown: give "
                              "convert.temperature and convert.normalize_embedding, or convert.row")
        kwargs = {"temperature": float(temperature), "normalize_embedding": bool(normalize_embedding)}
    if cfg.backbone == "beit":
        kwargs["img_size"] = cfg.img_size
    return _Plan(preset_name, cfg, space, kwargs)


def _build(plan: _Plan, source: _Source) -> tuple[torch.nn.Module, str, list[str]]:
    """(model, head, class names): a property head over the plan's label space (its D must be the
    released head's output channels), else a one-hot head named by mmseg's class list."""
    out_channels = _head_channels(source.state_dict, source.where)
    space = plan.space
    if space is not None:
        if space.dim != out_channels:
            raise ProlabError(f"{source.where}: decode_head.conv_seg emits {out_channels} channels but label "
                              f"space {space.name!r} has D={space.dim}")
        model = build_model(plan.cfg, class_rows=space.multi_hot, centres=space.centres, **plan.kwargs)
        return model, "property", list(space.classes)
    mmseg1_classes = (source.mmseg_meta.get("dataset_meta") or {}).get("classes")  # MMSeg 1.x
    names = list(source.classes) if source.classes else [
        str(c) for c in (source.mmseg_meta.get("CLASSES") or mmseg1_classes or [])]
    if not names:
        names = [f"class_{i}" for i in range(out_channels)]
    if len(names) != out_channels:
        raise ProlabError(f"{source.where}: {len(names)} class names for a head with {out_channels} outputs "
                          "(a ProLab embedding head? give convert.label_space or convert.bank)")
    return build_model(plan.cfg, num_classes=out_channels), "onehot", names


def _load_weights(model: torch.nn.Module, sd: dict, where: str, allow_missing: bool) -> tuple[list, list, list]:
    """Load the released weights into ``model``: BEiT position-index buffers the file lacks are
    filled from the model, a shape mismatch is refused, missing keys too unless ``allow_missing``.
    Returns (missing, unexpected, filled) key lists."""
    own = model.state_dict()
    filled = [k for k in own if k.endswith("relative_position_index") and k not in sd]
    sd = dict(sd)
    for k in filled:
        sd[k] = own[k]
    bad = [f"{k} {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in sd.items()
           if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise ProlabError(f"{where}: {len(bad)} shapes differ from the model, first: {bad[0]}")
    result = model.load_state_dict(sd, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing and not allow_missing:
        raise ProlabError(f"{where}: {len(missing)} model keys missing from the checkpoint, first: "
                          f"{missing[:3]} (set convert.allow_missing to keep their fresh initialisation)")
    return missing, unexpected, filled
