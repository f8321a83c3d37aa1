# ADE20K-150, BEiT-Adapter-L + UperNet, ProLab property head (paper: 58.2 mIoU).
# Row 'ade20k-beit-adapter-l-640-prolab' of segmentation/zoo.py; settings as in the released config:
# K=256, T=0.01, e normalised: True, crop 640, scale (2048, 640), slide stride 426, lr 2e-05,
# wd 0.05, layer decay 0.9 over 24 layers, 2 images/GPU x 8 GPUs, 160k iterations.
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
pretrained = 'pretrained/beit_large_patch16_224_pt22k_ft22k.pth'
crop_size = (640, 640)
data_preprocessor = dict(size=crop_size)
# Both heads' label space, K, T and normalisation (mmengine keeps no `__` name in the resolved config).
__prolab_head = dict(
    label_space=label_space, num_properties=256, temperature=0.01, normalize_embedding=True)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(arch='beit-adapter-l', img_size=640, pretrained=pretrained),
    decode_head=__prolab_head,
    auxiliary_head=__prolab_head,
    test_cfg=dict(crop_size=crop_size, stride=(426, 426)))

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
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# fp32, as the released config (it sets no fp16).
optim_wrapper = dict(
    optimizer=dict(lr=2e-05, weight_decay=0.05), paramwise_cfg=dict(num_layers=24, decay_rate=0.9))
