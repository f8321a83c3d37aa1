"""How good a label space is, in numbers a person can check: collisions, properties per class, classes
per property, and how often a class's nearest neighbour by property rows is a class a person would call
related (``bench/label_space_quality.py`` compares shipped label spaces with ones built from other
descriptions; ``bench/related_classes/<list>.json`` holds the hand-written groups of related classes)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import numpy as np

from .classes import normalise
from .errors import ProlabError
from .multi_hot import collision_groups


@dataclass(frozen=True)
class Quality:
    """The numbers of one label space (see :func:`measure`)."""

    classes: int
    properties: int
    collision_groups: int
    classes_in_collisions: int
    properties_per_class_mean: float
    properties_per_class_min: int
    properties_per_class_max: int
    classes_per_property_mean: float
    classes_per_property_max: int
    single_class_properties: int
    unowned_properties: int
    nn_related: float  # share of classes whose nearest neighbour (Jaccard) is related; ties share the vote
    nn_judged: int  # classes with at least one related class in the list (the others are not counted)

    def as_dict(self) -> dict:
        """The numbers as a plain dict."""
        return asdict(self)


def jaccard(multi_hot: np.ndarray) -> np.ndarray:
    """[C,C] Jaccard similarity of the binary rows of ``multi_hot`` (diagonal set to -1)."""
    rows = (np.asarray(multi_hot) > 0).astype(np.float64)
    inter = rows @ rows.T
    sizes = rows.sum(1)
    union = sizes[:, None] + sizes[None, :] - inter
    sim = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    np.fill_diagonal(sim, -1.0)
    return sim


def related_pairs(classes: list[str], groups: dict[str, list[str]]) -> np.ndarray:
    """[C,C] bool: classes that share a group. Every group member must be one of ``classes``."""
    index = {normalise(c): i for i, c in enumerate(classes)}
    related = np.zeros((len(classes), len(classes)), dtype=bool)
    for group, members in groups.items():
        missing = [m for m in members if normalise(m) not in index]
        if missing:
            raise ProlabError(f"related-classes group {group!r}: not in the class list: {missing[:5]}")
        ids = [index[normalise(m)] for m in members]
        related[np.ix_(ids, ids)] = True
    np.fill_diagonal(related, False)
    return related


def measure(classes: list[str], multi_hot: np.ndarray, groups: dict[str, list[str]] | None = None) -> Quality:
    """The quality numbers of a class x property matrix; ``nn_related`` needs ``groups`` (else NaN)."""
    rows = (np.asarray(multi_hot) > 0)
    per_class = rows.sum(1)
    per_property = rows.sum(0)
    collisions = collision_groups(classes, rows.astype(np.float32))
    nn_related, judged = float("nan"), 0
    if groups is not None:
        related = related_pairs(classes, groups)
        sim = jaccard(rows)
        votes = []
        for i in range(len(classes)):
            if not related[i].any():
                continue
            nearest = np.flatnonzero(sim[i] == sim[i].max())
            votes.append(related[i, nearest].mean())
        judged = len(votes)
        nn_related = float(np.mean(votes)) if votes else float("nan")
    return Quality(
        classes=len(classes), properties=int(rows.shape[1]),
        collision_groups=len(collisions), classes_in_collisions=sum(len(g) for g in collisions),
        properties_per_class_mean=float(per_class.mean()), properties_per_class_min=int(per_class.min()),
        properties_per_class_max=int(per_class.max()),
        classes_per_property_mean=float(per_property.mean()), classes_per_property_max=int(per_property.max()),
        single_class_properties=int((per_property == 1).sum()), unowned_properties=int((per_property == 0).sum()),
        nn_related=nn_related, nn_judged=judged,
    )


def read_groups(path: str | os.PathLike) -> dict[str, list[str]]:
    """Hand-written groups of related classes: JSON ``{group: [class, ...]}``."""
    try:
        data = json.loads(open(path, encoding="utf-8").read())
    except (OSError, ValueError) as exc:
        raise ProlabError(f"{path}: cannot read related-classes groups ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise ProlabError(f"{path}: expected a JSON object {{group: [class, ...]}}")
    return data
