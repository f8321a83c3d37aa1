# ADE20K-150, BEiT-Adapter-L + UperNet, ProLab property head (paper: 58.2 mIoU).
# Row 'ade20k-beit-adapter-l-640-prolab' of segmentation/zoo.py; settings as in the released config:
# K=256, T=0.01, e normalised: True, crop 640, scale (2048, 640), slide stride 426, lr 2e-05,
# wd 0.05, layer decay 0.9 over 24 layers, 2 images/GPU x 8 GPUs, 160k iterations.
_base_ = ['./_base_/prolab_runtime.py']

# A prolab label-space artifact with the released assignment (K=256, D=768 bge-base-en-v1.5):
# `prolab import-bank embeddings/ade_desc_bge-base-en-v1.5_gpt3.5_cluster_256_embedding_bank.pth ...`
# or `prolab pipeline`; its class list must equal the dataset's metainfo classes.
label_space = 'label_spaces/ade20k-bge-base-k256'
pretrained = 'pretrained/beit_large_patch16_224_pt22k_ft22k.pth'
crop_size = (640, 640)
norm_cfg = dict(type='SyncBN', requires_grad=True)  # plain BN when not distributed (the Runner reverts it)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=crop_size)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='BEiTAdapter',
        arch='beit-adapter-l',
        img_size=640,
        drop_path_rate=0.3,
        pretrained=pretrained),
    decode_head=dict(
        type='ProLabUPerHead',
        label_space=label_space,
        num_properties=256,
        embed_dim=768,
        temperature=0.01,
        normalize_embedding=True,
        in_channels=[1024, 1024, 1024, 1024],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=1024,
        dropout_ratio=0.1,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='PropertyCosineLoss', loss_weight=1.0)),
    auxiliary_head=dict(
        type='ProLabFCNHead',
        label_space=label_space,
        num_properties=256,
        embed_dim=768,
        temperature=0.01,
        normalize_embedding=True,
        in_channels=1024,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='PropertyCosineLoss', loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(426, 426)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(2048, 640), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 640), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
data_root = 'data/ade/ADEChallengeData2016'
train_dataloader = dict(
    batch_size=2,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='ADE20KDataset',
        data_root=data_root,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='ADE20KDataset',
        data_root=data_root,
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

# AdamW, layer-wise lr decay with prolab's layer ids, no weight decay on 1-D parameters; fp32, as
# the released config (it sets no fp16).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-05, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='ProLabLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(num_layers=24, decay_rate=0.9))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=160000),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=160000, val_interval=16000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
