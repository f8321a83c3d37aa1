"""The paper's seven rows (ProLab, ECCV 2024, Tables 1-2): what was released for each and how to
reproduce it with prolab.

Every row id is also the name of its training config in ``segmentation/configs/``; the config holds
the full recipe (crop, scale, stride, optimiser, schedule), a row only what identifies the released
files and the numbers to expect. ``prolab zoo`` prints this table; the README's "Model zoo" section
is generated from it (:func:`markdown_table`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from prolab_cli.errors import ProlabError

_DRIVE = "https://drive.google.com/file/d/{}/view"
_CONFIGS = "https://github.com/lambert-x/ProLab/blob/main/"


@dataclass(frozen=True)
class Row:
    """One released ProLab model."""

    id: str                     # == the preset name in segmentation/configs
    title: str
    dataset: str                # prolab dataset layout (and built-in class list)
    num_classes: int
    num_properties: int         # K
    temperature: float          # T of sigmoid(z / T)
    normalize_embedding: bool   # the pixel embedding L2-normalised before z = e . c
    miou: float                 # the paper's single-scale val mIoU
    config: str                 # the released config file (ProLab repository)
    drive_id: str               # Google Drive id of the released checkpoint
    bank_file: str              # the bank the config loads (centres + multi-hot), under embeddings/
    bank_key: str               # its entry
    label_space: str            # the name `prolab import-bank` gives the bank's artifact here
    data_root: str              # MMSegmentation's usual folder for the dataset
    embed_dim: int = 768        # D of bge-base-en-v1.5: the heads' output channels
    init_from_iters: int | None = None  # the recipe fine-tunes a run of this many iterations (load_from)
    pad_short_side: int | None = None   # the test pipeline's PadShortSide (== the preset's test.pad_short_side)
    note: str = ""

    @property
    def checkpoint(self) -> str:
        """The file name the commands give the downloaded checkpoint (its config's name, .pth)."""
        return PurePosixPath(self.config).stem + ".pth"

    @property
    def checkpoint_url(self) -> str:
        """Where the released checkpoint is downloaded."""
        return _DRIVE.format(self.drive_id)

    @property
    def config_url(self) -> str:
        """The released config file."""
        return _CONFIGS + self.config

    @property
    def converted(self) -> str:
        """The prolab checkpoint ``prolab convert`` writes."""
        return f"{self.id}.pth"

    def convert_command(self) -> str:
        """Released checkpoint + bank -> a self-describing prolab checkpoint."""
        return f"prolab convert {self.checkpoint} {self.converted} --row {self.id} --bank embeddings/{self.bank_file}"

    def eval_command(self) -> str:
        """Evaluate the converted checkpoint as the released test config does."""
        return f"prolab eval --checkpoint {self.converted} --data-root {self.data_root} -o {self.id}.metrics.json"

    def import_command(self) -> str:
        """The bank as a label-space artifact (what training needs)."""
        return (f"prolab import-bank embeddings/{self.bank_file} --name {self.label_space} "
                f"--key {self.bank_key} --classes {self.dataset}")

    def train_commands(self) -> list[str]:
        """Train the row from scratch (8 GPUs under torchrun in the paper); the BEiTv2 row runs twice."""
        common = f"--data-root {self.data_root} --label-space label_spaces/{self.label_space}"
        if self.init_from_iters is None:
            return [f"prolab train --config {self.id} {common} --work-dir work/{self.id}"]
        first = f"work/{self.id}-{self.init_from_iters // 1000}k"
        return [
            f"prolab train --config {self.id} {common} --work-dir {first} "
            f"--set schedule.max_iters={self.init_from_iters} --set schedule.init_from_required=false",
            f"prolab train --config {self.id} {common} --work-dir work/{self.id} --init-from {first}",
        ]

    def commands(self) -> list[str]:
        """Every command of the row, in the order they are run."""
        return [self.convert_command(), self.eval_command(), self.import_command(), *self.train_commands()]


def _bank(dataset: str, k: int) -> tuple[str, str]:
    return (f"{dataset}_desc_bge-base-en-v1.5_gpt3.5_cluster_{k}_embedding_bank.pth",
            f"bge-base-en-v1.5_gpt3.5_cluster_{k}_embeddings_and_labels")


_OLD_ADE_BANK = ("its config at ProLab commit 24cdb17 names the bank ade_desc_all-MiniLM-L6-v2_gpt3.5_cluster_"
                 "embedding_bank.pth, entry bge-base-en-v1.5_gpt3.5_reformated_cluster256_embeddings_and_labels")

ROWS: dict[str, Row] = {row.id: row for row in (
    Row("ade20k-vit-adapter-b-prolab", "ADE20K, ViT-Adapter-B", "ade20k", 150, 256, 0.04, False, 49.0,
        "configs/ADE20K/upernet_deit_adapter_base_512_320k_ade20k_bge_base.py", "1sCag4rcLno_qSnMPpeD5XdikEBucfkH3",
        *_bank("ade", 256), "ade20k-bge-base-k256", "data/ade/ADEChallengeData2016",
        note="160k iterations (the file says 320k; it inherits schedule_160k); " + _OLD_ADE_BANK),
    Row("coco-stuff-vit-adapter-b-prolab", "COCO-Stuff-164k, ViT-Adapter-B", "coco-stuff", 171, 256, 0.01, True, 45.4,
        "configs/COCO_Stuff/upernet_deit_adapter_base_512_160k_coco_stuff_bge_base.py",
        "12sCXqJ0Dsois_ywKYSUiezprwgGq8QkA", *_bank("coco_stuff_164k", 256), "coco-stuff-bge-base-k256",
        "data/coco_stuff164k",
        note="its config at ProLab commit 24cdb17 names the bank openvoc_cluster_desc/openvoc_embeddings_and_labels_"
             "gpt3.5_cluster_on_coco_stuff_164k.pth, entry descriptors_coco_stuff_164k_gpt3.5_cluster_on_coco_stuff_164k"),
    Row("pascal-context-59-vit-adapter-b-prolab", "Pascal Context-59, ViT-Adapter-B", "pascal-context-59", 59, 128,
        0.04, False, 58.2,
        "configs/pascal_context/upernet_deit_adapter_base_512_160k_pascal_context_59_bge_base_gpt3.5_cluster_128_"
        "cosine_simi_with_sigmoid_cosine_loss_temp_0.04_unnormalized.py", "157nrTusisS_KD1M_y-AukHbTr0PXVI5e",
        *_bank("pascal_context_59", 128), "pascal-context-59-bge-base-k128", "data/VOCdevkit/VOC2010",
        note="512 crop and scale (2048, 512): the row overrides its dataset file's 480 crop / (520, 520)"),
    Row("cityscapes-vit-adapter-b-prolab", "Cityscapes, ViT-Adapter-B", "cityscapes", 19, 32, 0.04, False, 81.4,
        "configs/cityscapes/upernet_deit_adapter_base_768_160k_cityscapes_bge_base_gpt3.5_cluster_32_cosine_simi_"
        "with_sigmoid_cosine_loss_temp_0.04_unnormalized.py", "1QcoEvGMlpOLaUB4V71c8Qhxx7SpNfRO6",
        *_bank("cityscapes_bdd", 32), "cityscapes-bdd-bge-base-k32", "data/cityscapes",
        note="label space shared with BDD100K"),
    Row("bdd100k-vit-adapter-b-prolab", "BDD100K, ViT-Adapter-B", "bdd100k", 19, 32, 0.04, False, 65.7,
        "configs/bdd100k/upernet_deit_adapter_base_768_160k_bdd100k_bge_base_gpt3.5_cluster_32_cosine_simi_with_"
        "sigmoid_cosine_loss_temp_0.04_unnormalized.py", "1ksAPKhCs7pk8TyiP3LkBeq7QZoW_RiC4",
        *_bank("cityscapes_bdd", 32), "cityscapes-bdd-bge-base-k32", "data/bdd100k",
        note="label space shared with Cityscapes; scale (2048, 1024) as Cityscapes"),
    Row("ade20k-beit-adapter-l-640-prolab", "ADE20K, BEiT-Adapter-L 640", "ade20k", 150, 256, 0.01, True, 58.2,
        "configs/ADE20K/upernet_beit_adapter_large_640_160k_ade20k_bge_base.py", "1zi2g__mZg0Y0GuZCx3gpmVXCnOCqt4Ut",
        *_bank("ade", 256), "ade20k-bge-base-k256", "data/ade/ADEChallengeData2016", note=_OLD_ADE_BANK),
    Row("ade20k-beitv2-adapter-l-896-prolab", "ADE20K, BEiTv2-Adapter-L 896", "ade20k", 150, 256, 0.04, False, 58.7,
        "configs/ADE20K/upernet_beitv2_adapter_large_896_80k_ade20k_bge_base.py", "1bJXd04eWeVvQT12fQPlLKT_bXQTdSNJN",
        *_bank("ade", 256), "ade20k-bge-base-k256", "data/ade/ADEChallengeData2016", init_from_iters=160_000,
        pad_short_side=896,
        note="80k iterations fine-tuned from a 160k run of the same config (load_from); the file named "
             "upernet_beitv2_adapter_large_896_160k_ade20k_bge_base.py at commit 24cdb17 is this same 80k fine-tune "
             "(older bank names), so the 160k run's own config is not released"),
)}


def get_row(row_id: str) -> Row:
    """The row ``row_id``; a one-line error listing the rows for an unknown one."""
    try:
        return ROWS[row_id]
    except KeyError:
        raise ProlabError(f"unknown row {row_id!r}; rows: {', '.join(ROWS)}") from None


def format_table() -> str:
    """The rows and their commands as plain text (``prolab zoo``)."""
    lines = []
    for r in ROWS.values():
        lines += [f"{r.id}  —  {r.title}, paper {r.miou:.1f} mIoU (single scale)",
                  f"  K {r.num_properties}, T {r.temperature:g}, embedding {'normalised' if r.normalize_embedding else 'not normalised'}, "
                  f"{r.num_classes} classes ({r.dataset})",
                  f"  checkpoint: {r.checkpoint}  <- {r.checkpoint_url}",
                  f"  bank:       embeddings/{r.bank_file}  entry {r.bank_key}"]
        if r.pad_short_side:
            lines.append(f"  test:       pad short side {r.pad_short_side} (PadShortSide, after Normalize)")
        if r.note:
            lines.append(f"  note:       {r.note}")
        lines += ["  convert + eval:", f"    {r.convert_command()}", f"    {r.eval_command()}",
                  "  train:", f"    {r.import_command()}", *(f"    {c}" for c in r.train_commands()), ""]
    return "\n".join(lines).rstrip() + "\n"


def markdown_table() -> str:
    """The README's model-zoo section body: one table of the rows, then their commands."""
    head = ["row / preset", "paper mIoU", "K", "T", "e normalised", "released checkpoint", "bank file (entry key)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in ROWS.values():
        lines.append(f"| `{r.id}` ({r.title}) | {r.miou:.1f} | {r.num_properties} | {r.temperature:g} | "
                     f"{'yes' if r.normalize_embedding else 'no'} | [{r.checkpoint}]({r.checkpoint_url}) | "
                     f"`{r.bank_file}` (`{r.bank_key}`) |")
    lines += ["", "```bash"]
    for r in ROWS.values():
        lines += [f"# {r.id}: convert + eval, then train", r.convert_command(), r.eval_command(),
                  r.import_command(), *r.train_commands(), ""]
    lines[-1] = "```"
    return "\n".join(lines) + "\n"
