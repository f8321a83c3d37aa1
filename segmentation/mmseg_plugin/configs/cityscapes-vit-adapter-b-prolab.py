# Cityscapes, ViT-Adapter-B + UperNet, ProLab property head (paper: 81.4 mIoU).
# Row 'cityscapes-vit-adapter-b-prolab' of segmentation/zoo.py; settings as in the released config:
# K=32, T=0.04, e normalised: False, crop 768, scale (2048, 1024), slide stride 512, lr 6e-05,
# wd 0.01, layer decay 0.95 over 12 layers, 1 images/GPU x 8 GPUs, 160k iterations.
_base_ = [
    './_base_/prolab_runtime.py',
    './_base_/vit_adapter_b_prolab_upernet.py',
    './_base_/cityscapes.py',
    './_base_/schedule_160k.py',
]

# A prolab label-space artifact with the released assignment (K=32, D=768 bge-base-en-v1.5):
# `prolab import-bank embeddings/cityscapes_bdd_desc_bge-base-en-v1.5_gpt3.5_cluster_32_embedding_bank.pth ...`
# or `prolab pipeline`; its class list must equal the dataset's metainfo classes.
label_space = 'label_spaces/cityscapes-bdd-bge-base-k32'
crop_size = (768, 768)
# Both heads' label space, K, T and normalisation (mmengine keeps no `__` name in the resolved config).
__prolab_head = dict(
    label_space=label_space, num_properties=32, temperature=0.04, normalize_embedding=False)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=__prolab_head,
    auxiliary_head=__prolab_head,
    test_cfg=dict(crop_size=crop_size, stride=(512, 512)))

# fp32 (the schedule base's OptimWrapper), as the released config (it sets no fp16).
