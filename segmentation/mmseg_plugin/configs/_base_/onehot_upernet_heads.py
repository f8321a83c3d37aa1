# MMSeg's own UPerHead / FCNHead for the one-hot baselines of the ViT-Adapter-B rows: cross-entropy
# over the classes, averaged over the labelled pixels (as prolab computes it). A one-hot config
# inherits its ProLab row and this file, then replaces both heads with these, adding its class
# count and the row's norm_cfg: `dict(_base_.onehot_decode_head, _delete_=True, num_classes=...)`.
onehot_decode_head = dict(
    type='UPerHead',
    in_channels=[768, 768, 768, 768],
    in_index=[0, 1, 2, 3],
    pool_scales=(1, 2, 3, 6),
    channels=512,
    dropout_ratio=0.1,
    align_corners=False,
    loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, avg_non_ignore=True, loss_weight=1.0))
onehot_auxiliary_head = dict(
    type='FCNHead',
    in_channels=768,
    in_index=2,
    channels=256,
    num_convs=1,
    concat_input=False,
    dropout_ratio=0.1,
    align_corners=False,
    loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, avg_non_ignore=True, loss_weight=0.4))
