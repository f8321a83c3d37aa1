# One-hot baseline of 'coco-stuff-vit-adapter-b-prolab' (paper: 43.1 mIoU): the same backbone, data and schedule,
# with mmseg's own UPerHead / FCNHead and cross-entropy over the 171 classes.
_base_ = ['./coco-stuff-vit-adapter-b-prolab.py', './_base_/onehot_upernet_heads.py']

model = dict(
    decode_head=dict(_base_.onehot_decode_head, _delete_=True, num_classes=171, norm_cfg=_base_.norm_cfg),
    auxiliary_head=dict(_base_.onehot_auxiliary_head, _delete_=True, num_classes=171, norm_cfg=_base_.norm_cfg))
