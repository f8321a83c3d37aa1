# ADE20K-150, ViT-Adapter-B + UperNet, ProLab property head (paper: 49.0 mIoU).
# Row 'ade20k-vit-adapter-b-prolab' of segmentation/zoo.py; settings as in the released config:
# K=256, T=0.04, e normalised: False, crop 512, scale (2048, 512), slide stride 341, lr 6e-05,
# wd 0.01, layer decay 0.95 over 12 layers, 2 images/GPU x 8 GPUs, 160k iterations.
_base_ = [
    './_base_/prolab_runtime.py',
    './_base_/vit_adapter_b_prolab_upernet.py',
    './_base_/ade20k.py',
    './_base_/schedule_160k.py',
]

# A prolab label-space artifact with the released assignment (K=256, D=768 bge-base-en-v1.5):
# `prolab import-bank embeddings/ade_desc_bge-base-en-v1.5_gpt3.5_cluster_256_embedding_bank.pth ...`
# or `prolab pipeline`; its class list must equal the dataset's metainfo classes.
label_space = 'label_spaces/ade20k-bge-base-k256'
crop_size = (512, 512)
# Both heads' label space, K, T and normalisation (mmengine keeps no `__` name in the resolved config).
__prolab_head = dict(
    label_space=label_space, num_properties=256, temperature=0.04, normalize_embedding=False)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=__prolab_head,
    auxiliary_head=__prolab_head,
    test_cfg=dict(crop_size=crop_size, stride=(341, 341)))

# fp16 with a dynamic loss scale starting at 512 (the released
# `fp16 = dict(loss_scale=dict(init_scale=512))`).
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale=dict(init_scale=512))
