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
    "green": (30, 180, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 220, 40),
    "purple": (150, 40, 190),
    "cyan": (40, 210, 220),
}
TEXTURES = ("plain", "striped", "dotted", "checkered")
SHAPES = ("disc", "square", "triangle", "cross")

PHRASES: dict[str, list[str]] = {
    "red": ["bright red", "red like a ripe tomato"],
    "green": ["vivid green", "green like fresh grass"],
    "blue": ["deep blue", "blue like the ocean"],
    "yellow": ["sunny yellow", "yellow like a lemon"],
    "purple": ["rich purple", "purple like a plum"],
    "cyan": ["light cyan", "cyan like tropical water"],
    "plain": ["a smooth uniform surface without any pattern", "flat plain texture"],
    "striped": ["covered in parallel diagonal stripes", "a striped pattern of lines"],
    "dotted": ["covered in small round dots", "a polka-dot pattern of spots"],
    "checkered": ["a checkerboard pattern of squares", "checkered like a chess board"],
    "disc": ["a round circular outline", "shaped like a flat disc"],
    "square": ["a square outline with four right-angled corners", "shaped like a box seen from the front"],
    "triangle": ["a triangular outline with three pointed corners", "shaped like a pointed wedge"],
    "cross": ["a cross-shaped outline like a plus sign", "two bars crossing at right angles"],
}
GROUND = "ground"
GROUND_DESCRIPTIONS = [
    "a flat grey surface covering the background",
    "grainy grey floor with fine noise",
    "dull neutral grey in colour",
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


def make_classes(num_seen: int, num_heldout: int, seed: int) -> tuple[list[SynthClass], list[SynthClass]]:
    """(seen, held-out) classes: distinct property triples; every held-out class's colour,
    texture and shape each occur in seen classes (as often as possible), never that combination."""
    triples = list(itertools.product(COLOURS, TEXTURES, SHAPES))
    if num_seen + num_heldout > len(triples) or num_seen < 1 or num_heldout < 0:
        raise ProlabError(f"--classes/--heldout: need 1 <= seen and seen + held-out <= {len(triples)}")
    rng = np.random.default_rng(seed)
    order = [triples[i] for i in rng.permutation(len(triples))]
    seen = order[:num_seen]
    counts = [{} for _ in range(3)]
    for t in seen:
        for axis in range(3):
            counts[axis][t[axis]] = counts[axis].get(t[axis], 0) + 1
    coverage = lambda t: min(counts[a].get(t[a], 0) for a in range(3))  # noqa: E731
    # held out: the unseen triples whose properties the seen classes show most often (ties: draw order)
    candidates = [t for t in order[num_seen:] if coverage(t) > 0]
    heldout = sorted(candidates, key=lambda t: -coverage(t))[:num_heldout]
    if len(heldout) < num_heldout:
        raise ProlabError(f"only {len(heldout)} held-out classes share all properties with {num_seen} seen ones; raise --classes")
    make = lambda tr: SynthClass(" ".join((tr[0], tr[1], tr[2])), *tr)  # noqa: E731
    return [make(t) for t in seen], [make(t) for t in heldout]


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
    elif shape == "cross":
        t = r * 0.35
        draw.rectangle([cx - r, cy - t, cx + r, cy + t], fill=1)
        draw.rectangle([cx - t, cy - r, cx + t, cy + r], fill=1)
    return np.asarray(canvas, dtype=bool)


def render(
    objects: list[tuple[int, SynthClass]], size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image [S,S,3], train-id mask [S,S]) with ``objects`` = (train id, class) drawn over
    ground (train id 0) in order, later ones on top."""
    img = np.clip(rng.normal(128, 18, (size, size, 1)).repeat(3, axis=2), 0, 255)
    label = np.zeros((size, size), np.uint8)
    period = max(size // 10, 4)
    for class_id, cls in objects:
        r = rng.uniform(0.16, 0.3) * size
        cy, cx = rng.uniform(r * 0.6, size - r * 0.6, size=2)
        region = _shape_mask(cls.shape, size, size, cy, cx, r)
        pattern = _texture_mask(cls.texture, size, size, period)
        colour = np.array(COLOURS[cls.colour], np.float32)
        shade = np.where(pattern[..., None], colour, colour * 0.45 + 20)
        img[region] = shade[region]
        label[region] = class_id
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
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
) -> Path:
    """Write the synthetic dataset to ``out`` (atomically) in ``layout``'s folder structure."""
    lay = get_layout(layout)
    seen, heldout = make_classes(num_seen, num_heldout, seed)
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
                    ids[-1] = 1 + num_seen + int(rng.integers(len(heldout)))
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


def subset_label_space(artifact: str | Path, classes_file: str | Path, name: str, out_dir: str | Path) -> Path:
    """Save the label space ``artifact`` restricted to the classes of ``classes_file`` (a class
    list, or a descriptions JSON whose keys are the classes): :meth:`LabelSpace.subset`."""
    import json

    from prolab_cli.classes import load_classes

    space = LabelSpace.load(artifact)
    path = Path(classes_file)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if text.lstrip().startswith("{"):
        try:
            wanted = list(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ProlabError(f"{path}: invalid JSON ({exc.msg})") from None
    else:
        wanted = load_classes(path)
    return space.subset(wanted, name).save(out_dir)


def attribute_label_space(root: str | Path, name: str, classes: list[str] | None = None, dim: int = 32, seed: int = 0):
    """An oracle label space for a synthetic dataset: one property per colour, texture and shape
    (plus one for the ground), random orthogonal centres of width ``dim``. It bypasses the LLM and
    embedder, so tests and controls can run without them; ``classes`` (default: all) picks rows."""
    import json

    root = Path(root)
    info = json.loads((root / "synth.json").read_text(encoding="utf-8"))
    values = [GROUND, *COLOURS, *TEXTURES, *SHAPES]
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
