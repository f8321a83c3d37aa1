# One-hot baseline of 'coco-stuff-vit-adapter-b-prolab' (paper: 43.1 mIoU): the same backbone, data and schedule,
# with mmseg's own UPerHead / FCNHead and cross-entropy over the 171 classes (mean over the
# labelled pixels, as prolab computes it).
_base_ = ['./coco-stuff-vit-adapter-b-prolab.py']

model = dict(
    decode_head=dict(
        _delete_=True,
        type='UPerHead',
        in_channels=[768, 768, 768, 768],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=512,
        dropout_ratio=0.1,
        num_classes=171,
        norm_cfg={{_base_.norm_cfg}},
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, avg_non_ignore=True, loss_weight=1.0)),
    auxiliary_head=dict(
        _delete_=True,
        type='FCNHead',
        in_channels=768,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=171,
        norm_cfg={{_base_.norm_cfg}},
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, avg_non_ignore=True, loss_weight=0.4)))
