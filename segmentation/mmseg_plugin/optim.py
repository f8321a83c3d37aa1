"""Layer-wise learning-rate decay with prolab's layer ids (``backbone.blocks.i``), which mmseg's
own LayerDecayOptimizerConstructor does not know (it expects ``backbone.layers.i``)."""

from __future__ import annotations

from mmengine.optim import DefaultOptimWrapperConstructor
from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS

from segmentation.engine.optim import count_layers, param_groups


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class ProLabLayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """``paramwise_cfg=dict(decay_rate=0.95, num_layers=12)``: embeddings id 0, block i id i+1,
    the rest num_layers+1; lr scale decay_rate ** (num_layers + 1 - id); no weight decay on 1-D
    parameters and embedding tables (prolab's ``segmentation.engine.optim.param_groups``)."""

    def add_params(self, params: list, module, **kwargs) -> None:
        num_layers = int(self.paramwise_cfg.get("num_layers") or count_layers(module))
        decay = float(self.paramwise_cfg.get("decay_rate", 1.0))
        for group in param_groups(module, self.base_lr, self.base_wd or 0.0, decay, num_layers):
            group.pop("names")
            params.append(group)
