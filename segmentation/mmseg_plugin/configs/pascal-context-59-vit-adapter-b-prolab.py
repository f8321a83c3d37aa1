# Pascal Context-59, ViT-Adapter-B + UperNet, ProLab property head (paper: 58.2 mIoU).
# Row 'pascal-context-59-vit-adapter-b-prolab' of segmentation/zoo.py; settings as in the released config:
# K=128, T=0.04, e normalised: False, crop 512, scale (2048, 512), slide stride 341, lr 6e-05,
# wd 0.01, layer decay 0.95 over 12 layers, 2 images/GPU x 8 GPUs, 160k iterations.
_base_ = [
    './_base_/prolab_runtime.py',
    './_base_/vit_adapter_b_prolab_upernet.py',
    './_base_/pascal_context_59.py',
    './_base_/schedule_160k.py',
]

# A prolab label-space artifact with the released assignment (K=128, D=768 bge-base-en-v1.5):
# `prolab import-bank embeddings/pascal_context_59_desc_bge-base-en-v1.5_gpt3.5_cluster_128_embedding_bank.pth ...`
# or `prolab pipeline`; its class list must equal the dataset's metainfo classes.
label_space = 'label_spaces/pascal-context-59-bge-base-k128'
crop_size = (512, 512)
# Both heads' label space, K, T and normalisation (mmengine keeps no `__` name in the resolved config).
__prolab_head = dict(
    label_space=label_space, num_properties=128, temperature=0.04, normalize_embedding=False)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=__prolab_head,
    auxiliary_head=__prolab_head,
    test_cfg=dict(crop_size=crop_size, stride=(341, 341)))

# fp32 (the schedule base's OptimWrapper), as the released config (it sets no fp16).
