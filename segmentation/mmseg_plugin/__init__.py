"""prolab's MMSegmentation 1.x plugin: import it (``custom_imports``) to register

- backbones ``ViTAdapter`` and ``BEiTAdapter`` (prolab's models and deformable-attention op),
- heads ``ProLabUPerHead``, ``ProLabFCNHead``, ``ProLabSegformerHead`` (the ProLab property
  classifier over a prolab label-space artifact),
- ``ProLabLayerDecayOptimizerConstructor`` (layer-wise lr decay with prolab's layer ids),
- ``ProLabSegDataPreProcessor`` (the BEiTv2 row's test-time PadShortSide, as the original),
- losses ``PropertyCosineLoss`` and ``PropertyBCELoss``,
- the ``LabelSpaceCheckHook`` and the ``ProLabFolderDataset``,

after making mmseg importable with mmcv-lite (a stand-in for the compiled ``mmcv._ext``, only when
full mmcv is absent) and allow-listing, while mmengine reads a checkpoint, exactly the globals its
checkpoints need under torch's weights-only ``torch.load``.
The rest of prolab never imports mmseg, mmengine or mmcv; only this package does.
"""

from __future__ import annotations

from prolab_cli.errors import ProlabError
from prolab_cli.extras import require

INSTALL_LINE = "pip install 'prolab[mmseg]'"


def _require_mmseg() -> None:
    what = "the MMSegmentation plugin"
    try:
        require("mmengine", what)
        require("mmseg", what)
    except AssertionError as exc:  # mmseg's own mmcv / mmengine version check
        raise ProlabError(f"mmsegmentation refuses the installed mmcv/mmengine ({exc}); run: {INSTALL_LINE}") from None


_require_mmseg()

from ._mmcv_ext import install_standin  # noqa: E402
from .safe_load import install_allow_list  # noqa: E402

USING_MMCV_STANDIN = install_standin()
install_allow_list()

from .backbones import MMSegBEiTAdapter, MMSegViTAdapter  # noqa: E402
from .datasets import ProLabFolderDataset  # noqa: E402
from .heads import ProLabFCNHead, ProLabSegformerHead, ProLabUPerHead  # noqa: E402
from .hooks import LabelSpaceCheckHook  # noqa: E402
from .losses import PropertyBCELoss, PropertyCosineLoss  # noqa: E402
from .optim import ProLabLayerDecayOptimizerConstructor  # noqa: E402
from .preprocess import ProLabSegDataPreProcessor  # noqa: E402

__all__ = ["INSTALL_LINE", "LabelSpaceCheckHook", "MMSegBEiTAdapter", "MMSegViTAdapter", "ProLabFCNHead",
           "ProLabFolderDataset", "ProLabLayerDecayOptimizerConstructor", "ProLabSegDataPreProcessor",
           "ProLabSegformerHead", "ProLabUPerHead", "PropertyBCELoss", "PropertyCosineLoss",
           "USING_MMCV_STANDIN"]
