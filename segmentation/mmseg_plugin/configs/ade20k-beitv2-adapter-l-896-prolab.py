# ADE20K-150, BEiTv2-Adapter-L + UperNet, ProLab property head (paper: 58.7 mIoU).
# Row 'ade20k-beitv2-adapter-l-896-prolab' of segmentation/zoo.py; settings as in the released config:
# K=256, T=0.04, e normalised: False, crop 896, scale (3584, 896), slide stride 512, lr 4e-05,
# wd 0.05, layer decay 0.9 over 24 layers, 2 images/GPU x 8 GPUs, 80k iterations.
_base_ = [
    './_base_/prolab_runtime.py',
    './_base_/beit_adapter_l_prolab_upernet.py',
    './_base_/ade20k.py',
    './_base_/schedule_160k.py',
]

# A prolab label-space artifact with the released assignment (K=256, D=768 bge-base-en-v1.5):
# `prolab import-bank embeddings/ade_desc_bge-base-en-v1.5_gpt3.5_cluster_256_embedding_bank.pth ...`
# or `prolab pipeline`; its class list must equal the dataset's metainfo classes.
label_space = 'label_spaces/ade20k-bge-base-k256'
pretrained = 'pretrained/beitv2_large_patch16_224_pt1k_ft21k.pth'
crop_size = (896, 896)
# ProLabSegDataPreProcessor: the released test pipeline's PadShortSide(896) after Normalize, the padded
# prediction resized whole to the image as mmseg 0.x does (MMSeg 1.x's test_cfg padding would crop it).
data_preprocessor = dict(type='ProLabSegDataPreProcessor', pad_short_side=896, size=crop_size)
# Both heads' label space, K, T and normalisation (mmengine keeps no `__` name in the resolved config).
__prolab_head = dict(
    label_space=label_space, num_properties=256, temperature=0.04, normalize_embedding=False)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(arch='beitv2-adapter-l', img_size=896, pretrained=pretrained),
    decode_head=__prolab_head,
    auxiliary_head=__prolab_head,
    test_cfg=dict(crop_size=crop_size, stride=(512, 512)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(3584, 896), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(3584, 896), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# fp32, as the released config (it sets no fp16).
optim_wrapper = dict(
    optimizer=dict(lr=4e-05, weight_decay=0.05), paramwise_cfg=dict(num_layers=24, decay_rate=0.9))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=80000),
]
train_cfg = dict(max_iters=80000)

# Fine-tuned for 80k iterations from a 160k run of this same config (the paper's recipe):
# set load_from to that run's checkpoint.
load_from = None
