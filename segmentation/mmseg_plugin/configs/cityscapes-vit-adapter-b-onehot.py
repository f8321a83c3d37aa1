# One-hot baseline of 'cityscapes-vit-adapter-b-prolab' (paper: 79.9 mIoU): the same backbone, data and schedule,
# with mmseg's own UPerHead / FCNHead and cross-entropy over the 19 classes.
_base_ = ['./cityscapes-vit-adapter-b-prolab.py', './_base_/onehot_upernet_heads.py']

model = dict(
    decode_head=dict(_base_.onehot_decode_head, _delete_=True, num_classes=19, norm_cfg=_base_.norm_cfg),
    auxiliary_head=dict(_base_.onehot_auxiliary_head, _delete_=True, num_classes=19, norm_cfg=_base_.norm_cfg))
