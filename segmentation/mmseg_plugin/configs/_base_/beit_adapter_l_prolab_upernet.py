# BEiT-Adapter-L + UperNet with ProLab's property heads: the ViT-Adapter-B model with the large
# backbone's 1024 channels. A row config names the backbone arch, image size and checkpoint.
_base_ = ['./vit_adapter_b_prolab_upernet.py']

model = dict(
    backbone=dict(type='BEiTAdapter'),
    decode_head=dict(in_channels=[1024, 1024, 1024, 1024], channels=1024),
    auxiliary_head=dict(in_channels=1024))
