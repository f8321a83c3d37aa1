"""A small synthetic segmentation dataset whose classes are defined by visual properties.

Each object class is a (colour, texture, shape) triple, drawn as textured shapes on a noisy grey
"ground"; its descriptions state exactly those properties, so a property-level label space built
from them is meaningful. Some triples are *held out*: they never appear in the training split,
only in validation, and only ``descriptions.json`` knows them (``descriptions_seen.json`` does
not), which is what the unseen-class experiment needs.

Written in the exact folder layout of a real dataset (``--layout``), with ``classes.txt`` (all
classes, seen first), ``descriptions.json``, ``descriptions_seen.json`` and ``synth.json``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from prolab_cli.atomic import directory, write_json, write_text
from prolab_cli.errors import ProlabError

from ..label_space import LabelSpace
from .layouts import get_layout

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (240, 130, 20),
    "yellow": (235, 220, 40),
    "green": (30, 180, 40),
    "cyan": (40, 210, 220),
    "blue": (30, 60, 220),
    "purple": (150, 40, 190),
    "pink": (245, 120, 190),
}
TEXTURES = ("plain", "striped", "dotted", "checkered")
SHAPES = ("disc", "square", "triangle", "cross", "diamond")

# Two phrasings per property value; different values do not share a sentence pattern, so that
# the embedding model groups phrasings by meaning rather than by template.
PHRASES: dict[str, list[str]] = {
    "red": ["bright red colour", "red like a ripe tomato"],
    "orange": ["warm orange colour", "orange like a tangerine"],
    "yellow": ["sunny yellow colour", "yellow like a lemon"],
    "green": ["vivid green colour", "green like fresh grass"],
    "cyan": ["light cyan colour", "cyan like tropical water"],
    "blue": ["deep blue colour", "blue like the ocean"],
    "purple": ["rich purple colour", "purple like a plum"],
    "pink": ["soft pink colour", "pink like a flamingo"],
    "plain": ["plain and smooth, without any pattern", "one uniform plain shade"],
    "striped": ["covered in diagonal stripes", "a striped pattern of parallel lines"],
    "dotted": ["covered in small round dots", "a polka-dot pattern of spots"],
    "checkered": ["a checkerboard pattern of squares", "checkered like a chess board"],
    "disc": ["round like a coin", "a circular disc"],
    "square": ["a square with four equal sides", "square like a box"],
    "triangle": ["a triangle with three pointed corners", "triangular like a wedge"],
    "cross": ["a cross like a plus sign", "two bars crossing at right angles"],
    "diamond": ["a diamond standing on one tip", "a rhombus, a square turned on its corner"],
}
GROUND = "ground"
GROUND_DESCRIPTIONS = [
    "the background floor behind the objects",
    "grainy grey ground with fine noise",
    "dull neutral grey floor",
]


@dataclass(frozen=True)
class SynthClass:
    """One object class: its name and the properties it is drawn with."""

    name: str
    colour: str
    texture: str
    shape: str

    def descriptions(self) -> list[str]:
        """The class's descriptions: two phrasings of each of its three properties."""
        return [p for key in (self.colour, self.texture, self.shape) for p in PHRASES[key]]


def hamming(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """Number of properties (colour, texture, shape) in which two classes differ."""
    return sum(x != y for x, y in zip(a, b))


def _support(seen: list[tuple], triple: tuple) -> int:
    """How often the least-seen property of ``triple`` occurs among ``seen`` classes."""
    return min(sum(t[axis] == triple[axis] for t in seen) for axis in range(3))


def property_pairs(triple: tuple) -> list[tuple]:
    """The three property pairs of a class: (colour, texture), (colour, shape), (texture, shape)."""
    return [(0, triple[0], triple[1]), (1, triple[0], triple[2]), (2, triple[1], triple[2])]


def make_classes(
    num_seen: int, num_heldout: int, seed: int, min_support: int = 2, min_distance: int = 1, attempts: int = 200,
    num_colours: int = len(COLOURS),
) -> tuple[list[SynthClass], list[SynthClass]]:
    """(seen, held-out) classes as distinct (colour, texture, shape) triples over the first
    ``num_colours`` colours of :data:`COLOURS`.

    Held-out classes are drawn first, with distinct colours while there are colours left. Seen
    classes are then picked one at a time among the other triples, each time the one whose
    property pairs (colour-texture, colour-shape, texture-shape) have been seen least (a held-out
    class's pairs that no seen class shows yet first), so that among seen classes no property
    predicts another: a model cannot read a held-out class's texture or shape off its colour.
    Every held-out property occurs in at least ``min_support`` seen classes. Each held-out class is a new combination (Hamming distance >= 1 in properties,
    >= 2 between property rows); ``min_distance=2`` also keeps every seen class from sharing two
    of its properties, which makes each held-out pair unseen and colour *anti*-predict texture
    and shape among seen classes (the diagnosis control). Raises ProlabError when ``attempts``
    draws cannot satisfy it.
    """
    if not 1 <= num_colours <= len(COLOURS):
        raise ProlabError(f"synth.colours {num_colours}: expected 1..{len(COLOURS)}")
    palette = list(COLOURS)[:num_colours]
    triples = list(itertools.product(palette, TEXTURES, SHAPES))
    if num_seen < 1 or num_heldout < 0 or num_seen + num_heldout > len(triples):
        raise ProlabError(f"synth.seen/synth.heldout: need 1 <= seen and seen + held-out <= {len(triples)}")
    rng = np.random.default_rng(seed)
    for _ in range(attempts):
        order = [triples[i] for i in rng.permutation(len(triples))]
        heldout: list[tuple] = []
        for t in order:  # distinct colours first, then any
            if len(heldout) == num_heldout:
                break
            if t[0] not in {h[0] for h in heldout} or len(heldout) >= len(palette):
                heldout.append(t)
        free = [t for t in order if t not in heldout and all(hamming(t, h) >= min_distance for h in heldout)]
        seen: list[tuple] = []
        count: dict[tuple, int] = {}
        wanted = {p for h in heldout for p in property_pairs(h)}  # a held-out class's pairs, seen in other classes

        def rarity(t: tuple) -> float:
            return sum(1 / (1 + count.get(p, 0)) + (p in wanted and p not in count) for p in property_pairs(t))

        while len(seen) < num_seen and free:
            pick = max(free, key=rarity)
            free.remove(pick)
            seen.append(pick)
            for p in property_pairs(pick):
                count[p] = count.get(p, 0) + 1
        if len(seen) == num_seen and all(_support(seen, h) >= min_support for h in heldout):
            seen = [t for t in order if t in seen]  # random order, not selection order
            make = lambda tr: SynthClass(" ".join(tr), *tr)  # noqa: E731
            return [make(t) for t in seen], [make(t) for t in heldout]
    raise ProlabError(
        f"no draw of {num_seen} seen classes gives {num_heldout} held-out classes whose properties each occur in"
        f" >= {min_support} seen classes at Hamming distance >= {min_distance}; raise synth.seen or lower synth.heldout"
    )


def _texture_mask(texture: str, h: int, w: int, period: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    if texture == "plain":
        return np.ones((h, w), bool)
    if texture == "striped":
        return ((xx + yy) // max(period // 2, 1)) % 2 == 0
    if texture == "dotted":
        cy, cx = yy % period - period / 2, xx % period - period / 2
        return (cy**2 + cx**2) > (period / 3.2) ** 2
    if texture == "checkered":
        return ((xx // period) + (yy // period)) % 2 == 0
    raise ValueError(texture)


def _shape_mask(shape: str, h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    if shape == "disc":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    elif shape == "square":
        draw.rectangle([cx - r * 0.85, cy - r * 0.85, cx + r * 0.85, cy + r * 0.85], fill=1)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r * 0.8), (cx + r, cy + r * 0.8)], fill=1)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r * 0.8, cy), (cx, cy + r), (cx - r * 0.8, cy)], fill=1)
    elif shape == "cross":
        t = r * 0.35
        draw.rectangle([cx - r, cy - t, cx + r, cy + t], fill=1)
        draw.rectangle([cx - t, cy - r, cx + t, cy + r], fill=1)
    return np.asarray(canvas, dtype=bool)


def render(
    objects: list[tuple[int, SynthClass]], size: int, rng: np.random.Generator, tries: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image [S,S,3], train-id mask [S,S]) with ``objects`` = (train id, class) placed over
    ground (train id 0) without overlapping, in order; an object that finds no free place in
    ``tries`` draws is left out (so put the one that must appear first).

    Objects do not occlude each other because a shape is a property: a half-hidden disc is no
    disc. Nuisances that no class is defined by: object scale and position, texture scale and
    phase, per-object lighting (brightness x0.75..1.25), ground brightness and sensor noise level."""
    ground = rng.uniform(105, 150)
    img = np.clip(rng.normal(ground, 18, (size, size, 1)).repeat(3, axis=2), 0, 255)
    label = np.zeros((size, size), np.uint8)
    taken = np.zeros((size, size), bool)
    for class_id, cls in objects:
        for _ in range(tries):
            r = rng.uniform(0.14, 0.3) * size
            cy, cx = rng.uniform(r * 0.6, size - r * 0.6, size=2)
            region = _shape_mask(cls.shape, size, size, cy, cx, r)
            if not (region & taken).any():
                break
        else:
            continue
        taken |= region
        period = max(int(round(size * rng.uniform(0.08, 0.13))), 4)
        shift = rng.integers(0, period, size=2)
        pattern = np.roll(_texture_mask(cls.texture, size, size, period), tuple(shift), axis=(0, 1))
        colour = np.array(COLOURS[cls.colour], np.float32) * rng.uniform(0.75, 1.25)
        shade = np.where(pattern[..., None], colour, colour * 0.45 + 20)
        img[region] = shade[region]
        label[region] = class_id
    img = np.clip(img + rng.normal(0, rng.uniform(3, 10), img.shape), 0, 255).astype(np.uint8)
    return img, label


def write_synth(
    out: str | Path,
    layout: str = "ade20k",
    num_train: int = 64,
    num_val: int = 16,
    size: int = 64,
    num_seen: int = 12,
    num_heldout: int = 4,
    seed: int = 0,
    min_support: int = 1,
    min_distance: int = 1,
    num_colours: int = len(COLOURS),
) -> Path:
    """Write the synthetic dataset to ``out`` (atomically) in ``layout``'s folder structure.

    Training images show seen classes only; every other validation image has one held-out object
    (placed first, so it is always there), the held-out classes taken in turn (see
    :func:`make_classes` for how they are drawn; the held-out experiment asks ``min_support=2``,
    small demo worlds work with 1)."""
    lay = get_layout(layout)
    if lay.class_count is not None:
        raise ProlabError(f"the {lay.name} layout is an evaluation set ({lay.class_count} classes from a file); "
                          "synthetic data is written in the training layouts only")
    seen, heldout = make_classes(num_seen, num_heldout, seed, min_support, min_distance, num_colours=num_colours)
    classes = [GROUND] + [c.name for c in seen + heldout]
    descriptions = {GROUND: GROUND_DESCRIPTIONS} | {c.name: c.descriptions() for c in seen + heldout}
    rng = np.random.default_rng(seed + 1)
    out = Path(out)
    with directory(out) as tmp:
        for split, count in (("train", num_train), ("val", num_val)):
            stems = []
            for i in range(count):
                pool = list(range(1, 1 + num_seen))
                n_obj = int(rng.integers(1, 4))
                ids = [int(rng.choice(pool)) for _ in range(n_obj)]
                if split == "val" and heldout and (i % 2 == 0):
                    ids[0] = 1 + num_seen + (i // 2) % len(heldout)
                objects = [(cid, (seen + heldout)[cid - 1]) for cid in ids]
                img, label = render(objects, size, rng)
                stem = f"synth_{split}_{i:05d}"
                if lay.recursive:
                    stem = f"synthcity/synthcity_{i:06d}_{split}"
                stems.append(stem)
                _save_pair(tmp, lay, split, stem, img, label)
            if split in lay.split_files:
                write_text(tmp / lay.split_files[split], "\n".join(stems) + "\n")
        write_text(tmp / "classes.txt", "\n".join(classes) + "\n")
        write_json(tmp / "descriptions.json", descriptions)
        write_json(tmp / "descriptions_seen.json", {k: descriptions[k] for k in classes[: 1 + num_seen]})
        write_json(
            tmp / "synth.json",
            {
                "layout": lay.name,
                "seed": seed,
                "size": size,
                "num_train": num_train,
                "num_val": num_val,
                "seen": classes[: 1 + num_seen],
                "heldout": classes[1 + num_seen :],
                "min_support": min_support,
                "min_distance": min_distance,
                "colours": list(COLOURS)[:num_colours],
                "properties": {c.name: [c.colour, c.texture, c.shape] for c in seen + heldout},
            },
        )
    return out


def _save_pair(root: Path, lay, split: str, stem: str, img: np.ndarray, label: np.ndarray) -> None:
    img_path = root / lay.img_dirs[split] / (stem + lay.img_suffixes[0])
    mask_path = root / lay.ann_dirs[split] / (stem + lay.seg_suffix)
    img_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    raw = label + 1 if lay.reduce_zero_label else label
    image = Image.fromarray(img)
    if img_path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(img_path, quality=95)
    else:
        image.save(img_path)
    Image.fromarray(raw.astype(np.uint8), "L").save(mask_path)


def attribute_label_space(root: str | Path, name: str, classes: list[str] | None = None, dim: int = 32, seed: int = 0):
    """An oracle label space for a synthetic dataset: one property per colour, texture and shape
    (plus one for the ground), random orthogonal centres of width ``dim``. It bypasses the LLM and
    embedder, so tests and controls can run without them; ``classes`` (default: all) picks rows."""
    import json

    root = Path(root)
    info = json.loads((root / "synth.json").read_text(encoding="utf-8"))
    values = [GROUND, *info.get("colours", COLOURS), *TEXTURES, *SHAPES]
    props = {GROUND: [GROUND]} | info["properties"]
    names = classes if classes is not None else info["seen"] + info["heldout"]
    rows = np.zeros((len(names), len(values)), np.float32)
    for i, cls in enumerate(names):
        for value in props[cls]:
            rows[i, values.index(value)] = 1.0
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, len(values))))
    descriptions = json.loads((root / "descriptions.json").read_text(encoding="utf-8"))
    return LabelSpace.from_arrays(name, names, rows, q.T.astype(np.float32), property_names=values,
                                  descriptions={c: descriptions[c] for c in names})
