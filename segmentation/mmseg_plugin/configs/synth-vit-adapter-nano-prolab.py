# The tiny ViT-Adapter ("vit-adapter-nano") with the ProLab head on prolab's synthetic dataset:
# the CPU test and demo config. Make the data and its label space as README.md's MMSegmentation section
# shows (prolab data synth --layout generic, then embed, cluster, build), and point the environment at
# them (or edit the two lines below):
#   PROLAB_SYNTH_ROOT=data/synth PROLAB_SYNTH_SPACE=label_spaces/synth prolab mmseg train <this file>
_base_ = ['./_base_/prolab_runtime.py']

data_root = '{{$PROLAB_SYNTH_ROOT:data/synth}}'
label_space = '{{$PROLAB_SYNTH_SPACE:label_spaces/synth}}'
crop_size = (64, 64)
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,
        size_divisor=32),
    backbone=dict(type='ViTAdapter', arch='vit-adapter-nano'),
    decode_head=dict(
        type='ProLabUPerHead',
        label_space=label_space,
        temperature=0.04,
        in_channels=[96, 96, 96, 96],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=64,
        dropout_ratio=0.1,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='PropertyCosineLoss', loss_weight=1.0)),
    auxiliary_head=dict(
        type='ProLabFCNHead',
        label_space=label_space,
        temperature=0.04,
        in_channels=96,
        in_index=2,
        channels=32,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='PropertyCosineLoss', loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
dataset = dict(type='ProLabFolderDataset', data_root=data_root, classes_file='classes.txt', img_suffix='.jpg')
train_dataloader = dict(
    batch_size=2,  # UPerHead's BN fails at batch 1 (the 1x1 pyramid-pooling branch)
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(dataset, data_prefix=dict(img_path='images/train', seg_map_path='masks/train'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(dataset, data_prefix=dict(img_path='images/val', seg_map_path='masks/val'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.999), weight_decay=0.01),
    constructor='ProLabLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(num_layers=4, decay_rate=0.9))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=2),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=2, end=6),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=6, val_interval=3)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=1),
               dist_cfg=dict(backend='gloo'))
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=3, max_keep_ckpts=3))
randomness = dict(seed=0)
