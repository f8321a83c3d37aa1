"""The classes-never-trained-on experiment on the synthetic world (``segmentation.data.synth``).

Four ways to label pixels, trained on the seen classes with the same data, iterations and seed:

* ``pipeline``: ProLab head over the label space the real stages make from the *seen* classes'
  descriptions (MiniLM -> k-means -> build); the held-out classes are added afterwards with
  ``prolab extend`` (their descriptions assigned to the nearest existing centres).
* ``oracle``: ProLab head over the true property rows (one property per colour, texture, shape).
* ``onehot``: the plain baseline; it has no way to name a held-out class (0 by construction).
* ``classemb``: the language-driven baseline: the head's pixel embedding scored against each
  class's description-embedding centroid; held-out classes get their own centroids at test time.

:func:`score_model` measures seen mIoU, held-out mIoU, held-out top-1 pixel accuracy among all
classes, the mean rank of the true class, and how often the predicted class has the object's true
colour / texture / shape (plus, for the oracle, the property head's own per-group decision).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from prolab_cli.artifact import LabelSpace

METHODS = ("pipeline", "oracle", "onehot", "classemb")
AXES = ("colour", "texture", "shape")


@dataclass
class World:
    """A written synthetic dataset: its root, classes (ground, seen, held-out) and their properties."""

    root: Path
    classes: list[str]
    seen: list[str]
    heldout: list[str]
    properties: dict[str, list[str]]
    colours: list[str]

    @classmethod
    def load(cls, root: str | Path) -> "World":
        """Read ``synth.json`` of a dataset written by :func:`~segmentation.data.synth.write_synth`."""
        root = Path(root)
        info = json.loads((root / "synth.json").read_text(encoding="utf-8"))
        from segmentation.data.synth import COLOURS

        return cls(root, info["seen"] + info["heldout"], info["seen"], info["heldout"], info["properties"],
                   info.get("colours", list(COLOURS)))


def description_values(descriptions: dict[str, list[str]]) -> list[str]:
    """The true property value (``red``, ``striped``, ``ground`` ...) each description states."""
    from segmentation.data.synth import GROUND, GROUND_DESCRIPTIONS, PHRASES

    phrase_to_value = {p: v for v, phrases in PHRASES.items() for p in phrases}
    phrase_to_value |= {p: GROUND for p in GROUND_DESCRIPTIONS}
    return [phrase_to_value[d] for texts in descriptions.values() for d in texts]


def make_spaces(world: World, out: Path, k: int, cluster_seed: int = 0, distinct: bool = True) -> dict[str, Any]:
    """The label spaces of every method: {method: (training artifact, test-time class scorer)} and
    the adjusted Rand index of descriptions -> k-means clusters vs descriptions -> true property.

    The pipeline clusters each distinct description once (``distinct``): every phrase of this
    world recurs in a dozen classes, while the ground's three occur once, and pooled k-means
    merges those into object clusters (the ground then owns, say, ``green``)."""
    from sklearn.metrics import adjusted_rand_score

    from prolab_cli.atomic import write_json
    from prolab_cli.build import build_label_space
    from prolab_cli.cluster import cluster_embeddings
    from prolab_cli.embed import embed_descriptions
    from prolab_cli.extend import extend_label_space
    from segmentation.data.synth import attribute_label_space

    descriptions = json.loads((world.root / "descriptions.json").read_text(encoding="utf-8"))
    seen_desc = {c: descriptions[c] for c in world.seen}
    held_desc = {c: descriptions[c] for c in world.heldout}
    write_json(out / "descriptions_heldout.json", held_desc)
    emb = embed_descriptions(seen_desc, progress=False)
    clusters = cluster_embeddings(emb, k, seed=cluster_seed, distinct=distinct)
    seen_space = build_label_space(emb, clusters, f"synth-seen-k{k}", allow_collisions=True)
    seen_path = seen_space.save(out / "spaces")
    full_space, report = extend_label_space(LabelSpace.load(seen_path), held_desc, f"synth-extended-k{k}",
                                            "descriptions_heldout.json")
    full_path = full_space.save(out / "spaces")
    ari = float(adjusted_rand_score(description_values(full_space.descriptions), full_space.desc_cluster))

    oracle_seen = attribute_label_space(world.root, "synth-oracle-seen", world.seen).save(out / "spaces")
    oracle_full = attribute_label_space(world.root, "synth-oracle-all").save(out / "spaces")

    all_emb = embed_descriptions(descriptions, progress=False)
    centroids = np.stack([all_emb.embeddings[all_emb.desc_class == i].mean(0) for i in range(len(all_emb.classes))])
    index = {c: i for i, c in enumerate(all_emb.classes)}
    seen_rows = [index[c] for c in world.seen]
    classemb_seen = LabelSpace.from_arrays(
        "synth-class-embedding-seen", world.seen, np.eye(len(world.seen), dtype=np.float32), centroids[seen_rows],
        property_names=world.seen, descriptions=seen_desc,
    ).save(out / "spaces")
    held_rows = [report_row.name for report_row in report if report_row.identical_to]
    return {
        "pipeline": (seen_path, LabelSpace.load(full_path)),
        "oracle": (oracle_seen, LabelSpace.load(oracle_full)),
        "onehot": (None, None),
        "classemb": (classemb_seen, centroids[[index[c] for c in world.classes]]),
        "ari": ari,
        "pipeline_collisions": seen_space.collisions(),
        "heldout_identical_rows": held_rows,
        "heldout_rows": {r.name: [k for k, _ in r.properties] for r in report},
    }


def model_for(method: str, checkpoint: str | Path, test_space: Any):
    """The trained model set up to score *all* classes of the world (its class order: the space's,
    or the dataset's for one-hot)."""
    from segmentation.engine.builder import model_from_checkpoint
    from segmentation.engine.checkpoint import load_checkpoint
    from segmentation.models.property_head import PropertyBank

    ckpt = load_checkpoint(checkpoint)
    if method in ("pipeline", "oracle"):
        model, classes, _ = model_from_checkpoint(ckpt, test_space)
        return model, classes, ckpt
    model, classes, _ = model_from_checkpoint(ckpt)
    if method == "classemb":
        old = model.bank
        model.bank = PropertyBank(np.eye(len(test_space), dtype=np.float32), test_space, old.temperature,
                                  old.normalize_embedding, old.basis, span_of=old.centres)
        classes = None  # the caller's class order: the centroids were stacked in it
    return model, classes, ckpt


def training_config(size: int, iters: int, seed: int, method: str, bank_basis: str = "span") -> dict:
    """The nano preset at ``size`` px for ``iters`` iterations (one-hot head for ``onehot``),
    trained on whole images (a random rescale-and-crop cuts objects, and a cut disc is no disc).

    The property heads score pixels in the centres' span (``bank_basis``): trained from scratch
    here, the paper's 384-wide MiniLM-space embedding collapses to the ground's row (bench/README)."""
    from segmentation.engine.config import apply_overrides, load_config

    head = "onehot" if method == "onehot" else "property"
    return apply_overrides(load_config("synth-vit-adapter-nano"), [
        f"schedule.max_iters={iters}", "train.ckpt_interval=100000", f"train.seed={seed}",
        f"train.log_interval={max(iters // 5, 1)}", f"model.img_size={size}", f"model.head={head}",
        f"model.bank_basis={bank_basis}",
        f"data.crop_size=[{size},{size}]", f"data.scale=[{2 * size},{size}]", "data.ratio_range=[1.0,1.0]",
        f"test.crop_size=[{size},{size}]", f"test.scale=[{2 * size},{size}]"])


def train_and_score(world: World, spaces: dict[str, Any], method: str, work_dir: Path, *, size: int, iters: int,
                    seed: int, bank_basis: str = "span") -> tuple[dict, Any]:
    """Train ``method`` on the seen classes of ``world`` and score it over all classes:
    (metrics with ``final_loss``/``train_seconds``/``eval_seconds``, the trained model).

    The seen-class label spaces lack the held-out classes that the dataset's class list names, so
    training maps classes by name (held-out classes never occur in the training split)."""
    import time

    from segmentation.engine.train import train

    train_space, test_space = spaces[method]
    start = time.time()
    run = train(training_config(size, iters, seed, method, bank_basis), world.root, work_dir=work_dir,
                label_space=train_space, progress=False, map_classes_by_name=train_space is not None)
    train_seconds = time.time() - start
    model, classes, ckpt = model_for(method, run["checkpoint"], test_space)
    scores = score_model(method, model, classes, ckpt, world)
    scores.update(final_loss=run["loss"], train_seconds=round(train_seconds, 1),
                  eval_seconds=round(time.time() - start - train_seconds, 1))
    return scores, model


def train_methods(world: World, spaces: dict[str, Any], methods: Sequence[str], work_dir: Path, *, size: int,
                  iters: int, seed: int, workers: int = 1) -> dict[str, dict]:
    """:func:`train_and_score` for each of ``methods`` (run directories ``work_dir/<method>``),
    ``workers`` at a time, each in its own process with one torch thread: {method: metrics}."""
    jobs = [(world, {m: spaces[m]}, m, Path(work_dir) / m, size, iters, seed) for m in methods]
    return dict(zip(methods, run_in_processes(_scores_of, jobs, workers)))


def run_in_processes(fn: Any, jobs: list, workers: int) -> list:
    """``[fn(job) for job in jobs]``, ``workers`` jobs at a time in spawned processes (in this
    process, in order, when ``workers`` is 1); ``fn`` must be importable by name."""
    if workers <= 1:
        return [fn(job) for job in jobs]
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(fn, jobs))


def _scores_of(job: tuple) -> dict:
    world, spaces, method, work_dir, size, iters, seed = job
    torch.set_num_threads(1)
    return train_and_score(world, spaces, method, work_dir, size=size, iters=iters, seed=seed)[0]


def true_class_rank(scores: torch.Tensor, true_scores: torch.Tensor) -> torch.Tensor:
    """Per pixel, the rank (1 = best) of the true class's score among ``scores`` [C,H,W], ties
    counted at their mean rank: a model that scores every class alike ranks the truth in the
    middle, not first."""
    above = (scores > true_scores[None]).sum(0).double()
    tied = (scores == true_scores[None]).sum(0).double() - 1
    return 1 + above + tied / 2


@torch.no_grad()
def score_model(method: str, model, model_classes: list[str] | None, ckpt: dict, world: World,
                split: str = "val") -> dict:
    """Seen / held-out metrics of ``model`` on ``split`` over all classes of ``world``."""
    from segmentation.data.datasets import SegDataset
    from segmentation.engine.inference import inference_settings, pipeline_for, scores_for

    classes = world.classes
    order = list(range(len(classes))) if model_classes is None else [model_classes.index(c) for c in classes]
    held = torch.tensor([classes.index(c) for c in world.heldout])
    seen_ids = [classes.index(c) for c in world.seen]
    settings = inference_settings(ckpt.get("config"), {})
    ds = SegDataset("ade20k", world.root, split, pipeline=pipeline_for(settings), target_classes=classes)
    n = len(classes)
    conf = torch.zeros(n, n, dtype=torch.float64)
    ranks = {"seen": [], "heldout": []}
    attrs = np.array([[None] * 3] + [world.properties[c] for c in classes[1:]], dtype=object)
    attr_hits = {group: np.zeros(3) for group in ("seen", "heldout")}
    attr_count = {"seen": 0, "heldout": 0}
    direct = {"heldout": np.zeros(3), "seen": np.zeros(3)}
    objects = objects_right = 0
    model.eval()
    for i in range(len(ds)):
        sample = ds[i]
        img, label = sample["img"].unsqueeze(0), sample["label"]
        scores = scores_for(settings, model.encode_decode, img, model.num_classes, tuple(label.shape))[0]
        scores = scores[order]
        if method == "onehot":  # it cannot name a class it never trained on
            scores[held] = -torch.inf
        pred = scores.argmax(0)
        valid = label != 255
        conf += torch.bincount(label[valid] * n + pred[valid], minlength=n * n).reshape(n, n).double()
        true_scores = scores.gather(0, label.clamp(max=n - 1)[None])[0]
        rank = true_class_rank(scores, true_scores)
        is_held = torch.isin(label, held)
        if bool(is_held.any()):  # one held-out object per image: right when most of its pixels are
            votes = torch.bincount(pred[is_held], minlength=n)
            objects += 1
            objects_right += int(int(votes.argmax()) == int(label[is_held][0]))
        is_seen_obj = valid & (label > 0) & ~is_held
        for group, mask in (("heldout", is_held), ("seen", is_seen_obj)):
            if not bool(mask.any()):
                continue
            ranks[group].append(rank[mask].double())
            t, p = label[mask].numpy(), pred[mask].numpy()
            attr_hits[group] += (attrs[t] == attrs[p]).sum(0)
            attr_count[group] += int(mask.sum())
        if method == "oracle":
            direct_hits = _oracle_property_hits(model, img, label, world, is_held, is_seen_obj)
            for group in direct:
                direct[group] += direct_hits[group]
    iou = conf.diag() / (conf.sum(0) + conf.sum(1) - conf.diag())
    present = (conf.sum(0) + conf.sum(1)) > 0

    def mean_iou(ids: list[int]) -> float:
        vals = [float(iou[i]) for i in ids if present[i]]
        return 100 * sum(vals) / len(vals) if vals else float("nan")

    held_list = held.tolist()
    held_pixels = conf[held_list].sum()
    out = {
        "seen_mIoU": mean_iou([0] + seen_ids),
        "heldout_mIoU": mean_iou(held_list),
        "heldout_top1": float(100 * conf[held_list, held_list].sum() / held_pixels) if held_pixels else float("nan"),
        "heldout_objects": objects,
        "heldout_object_accuracy": 100 * objects_right / objects if objects else float("nan"),
        "heldout_IoU": {classes[i]: 100 * float(iou[i]) for i in held_list},
        "num_classes": n,
    }
    for group in ("seen", "heldout"):
        r = torch.cat(ranks[group]) if ranks[group] else torch.zeros(0)
        out[f"{group}_true_class_rank"] = float(r.mean()) if len(r) else float("nan")
        out[f"{group}_property_accuracy_of_predicted_class"] = {
            axis: float(100 * attr_hits[group][j] / max(attr_count[group], 1)) for j, axis in enumerate(AXES)
        }
        if method == "oracle":
            out[f"{group}_property_accuracy_of_property_head"] = {
                axis: float(100 * direct[group][j] / max(attr_count[group], 1)) for j, axis in enumerate(AXES)
            }
    return out


def _oracle_property_hits(model, img, label, world: World, is_held, is_seen_obj) -> dict[str, np.ndarray]:
    """Per object pixel, whether the oracle head's strongest colour / texture / shape property is
    the true one (properties of the oracle space: ground, colours, textures, shapes in order)."""
    from segmentation.data.synth import SHAPES, TEXTURES

    props = model.property_scores(img)[0]
    if tuple(props.shape[-2:]) != tuple(label.shape):
        props = torch.nn.functional.interpolate(props[None], size=tuple(label.shape), mode="bilinear",
                                                align_corners=False)[0]
    groups = [world.colours, list(TEXTURES), list(SHAPES)]
    offsets = np.cumsum([1] + [len(g) for g in groups])
    truth = np.array([[0, 0, 0]] + [[groups[a].index(world.properties[c][a]) for a in range(3)]
                                    for c in world.classes[1:]])
    out = {}
    for group, mask in (("heldout", is_held), ("seen", is_seen_obj)):
        hits = np.zeros(3)
        if bool(mask.any()):
            t = truth[label[mask].numpy()]
            for a in range(3):
                guess = props[offsets[a]:offsets[a + 1]].argmax(0)[mask].numpy()
                hits[a] = (guess == t[:, a]).sum()
        out[group] = hits
    return out
