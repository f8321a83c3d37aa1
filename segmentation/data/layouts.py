"""Where each supported dataset keeps its images and masks (MMSegmentation's layouts).

A :class:`Layout` says, per split, which folder holds the images and which the label maps, how a
mask's file name follows from its image's, whether label 0 means "unlabelled"
(``reduce_zero_label``), which value on disk means "ignore" and which built-in class list names the
train ids. The open-vocabulary test sets (ADE20K-847, Pascal Context-459) are laid out as
MaskFormer's and ODISE's preparation scripts write them: uint16 TIFF label maps, 65535 = ignore,
validation split only, and no built-in class list: the user gives the list as a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prolab_cli.errors import ProlabError

SPLITS = ("train", "val")


@dataclass(frozen=True)
class Layout:
    """One dataset's folder structure and label conventions."""

    name: str
    img_dirs: dict[str, str]
    ann_dirs: dict[str, str]
    img_suffixes: tuple[str, ...]
    seg_suffix: str
    reduce_zero_label: bool
    classes: str | None
    #: per split, a text file listing image stems (Pascal Context); None: every image in img_dir
    split_files: dict[str, str] = field(default_factory=dict)
    #: images sit in sub-folders (Cityscapes' cities)
    recursive: bool = False
    description: str = ""
    #: the label value on disk that means "ignore" (255 in 8-bit masks, 65535 in 16-bit ones); also
    #: the largest value a mask may hold
    ignore_value: int = 255
    #: the number of classes the class list must have (the open-vocabulary evaluation sets)
    class_count: int | None = None


LAYOUTS: dict[str, Layout] = {
    "ade20k": Layout(
        name="ade20k",
        img_dirs={"train": "images/training", "val": "images/validation"},
        ann_dirs={"train": "annotations/training", "val": "annotations/validation"},
        img_suffixes=(".jpg",),
        seg_suffix=".png",
        reduce_zero_label=True,
        classes="ade20k",
        description="ADEChallengeData2016: images|annotations/{training,validation}, label 0 = ignore",
    ),
    "coco-stuff": Layout(
        name="coco-stuff",
        img_dirs={"train": "images/train2017", "val": "images/val2017"},
        ann_dirs={"train": "annotations/train2017", "val": "annotations/val2017"},
        img_suffixes=(".jpg",),
        seg_suffix="_labelTrainIds.png",
        reduce_zero_label=False,
        classes="coco-stuff",
        description="COCO-Stuff-164k: images|annotations/{train2017,val2017}, *_labelTrainIds.png",
    ),
    "pascal-context-59": Layout(
        name="pascal-context-59",
        img_dirs={"train": "JPEGImages", "val": "JPEGImages"},
        ann_dirs={"train": "SegmentationClassContext", "val": "SegmentationClassContext"},
        img_suffixes=(".jpg",),
        seg_suffix=".png",
        reduce_zero_label=True,
        classes="pascal-context-59",
        split_files={
            "train": "ImageSets/SegmentationContext/train.txt",
            "val": "ImageSets/SegmentationContext/val.txt",
        },
        description="VOC2010: JPEGImages, SegmentationClassContext, ImageSets/SegmentationContext/*.txt",
    ),
    "cityscapes": Layout(
        name="cityscapes",
        img_dirs={"train": "leftImg8bit/train", "val": "leftImg8bit/val"},
        ann_dirs={"train": "gtFine/train", "val": "gtFine/val"},
        img_suffixes=("_leftImg8bit.png",),
        seg_suffix="_gtFine_labelTrainIds.png",
        reduce_zero_label=False,
        classes="cityscapes",
        recursive=True,
        description="leftImg8bit/{train,val}/<city>, gtFine/{train,val}/<city>/*_gtFine_labelTrainIds.png",
    ),
    "bdd100k": Layout(
        name="bdd100k",
        img_dirs={"train": "images/10k/train", "val": "images/10k/val"},
        ann_dirs={"train": "labels/sem_seg/masks/train", "val": "labels/sem_seg/masks/val"},
        img_suffixes=(".jpg",),
        seg_suffix=".png",
        reduce_zero_label=False,
        classes="bdd100k",
        description="images/10k/{train,val}, labels/sem_seg/masks/{train,val}",
    ),
    "ade20k-847": Layout(
        name="ade20k-847",
        img_dirs={"val": "images_detectron2/validation"},
        ann_dirs={"val": "annotations_detectron2/validation"},
        img_suffixes=(".jpg",),
        seg_suffix=".tif",
        reduce_zero_label=False,
        classes="ade20k-847",
        ignore_value=65535,
        class_count=847,
        description="ADE20K_2021_17_01 as MaskFormer's prepare_ade20k_full_sem_seg.py writes it: "
                    "images_detectron2/validation + annotations_detectron2/validation/*.tif (uint16, 65535 = ignore)",
    ),
    "pascal-context-459": Layout(
        name="pascal-context-459",
        img_dirs={"val": "images/validation"},
        ann_dirs={"val": "annotations_ctx459/validation"},
        img_suffixes=(".jpg",),
        seg_suffix=".tif",
        reduce_zero_label=False,
        classes="pascal-context-459",
        ignore_value=65535,
        class_count=459,
        description="pascal_ctx_d2 as ODISE's prepare_pascal_ctx_full_sem_seg.py writes it: "
                    "images/validation + annotations_ctx459/validation/*.tif (uint16, 65535 = ignore)",
    ),
    "generic": Layout(
        name="generic",
        img_dirs={"train": "images/train", "val": "images/val"},
        ann_dirs={"train": "masks/train", "val": "masks/val"},
        img_suffixes=(".jpg", ".jpeg", ".png"),
        seg_suffix=".png",
        reduce_zero_label=False,
        classes=None,
        description="images/{train,val} + masks/{train,val}/<stem>.png (train ids, 255 = ignore) + classes.txt",
    ),
}

ALIASES = {
    "ade20k-150": "ade20k",
    "ade": "ade20k",
    "cocostuff": "coco-stuff",
    "coco-stuff-164k": "coco-stuff",
    "pascal-context": "pascal-context-59",
    "pcontext": "pascal-context-59",
    "bdd": "bdd100k",
    "ade847": "ade20k-847",
    "ade20k-full": "ade20k-847",
    "pascal-context-full": "pascal-context-459",
    "pc459": "pascal-context-459",
}


def get_layout(name: str) -> Layout:
    """The layout of dataset ``name`` (or an alias); a clear error for an unknown one."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in LAYOUTS:
        raise ProlabError(f"unknown dataset {name!r}; known: {', '.join(LAYOUTS)}")
    return LAYOUTS[key]
