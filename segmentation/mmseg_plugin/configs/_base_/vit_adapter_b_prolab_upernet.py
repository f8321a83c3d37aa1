# ViT-Adapter-B + UperNet with ProLab's property heads (DeiT-B initialisation). A row config adds
# the label space, K, T and normalisation to both heads, the pad size and the slide window.
pretrained = 'pretrained/deit_base_patch16_224-b5f2ef4d.pth'
norm_cfg = dict(type='SyncBN', requires_grad=True)  # plain BN when not distributed (the Runner reverts it)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='ViTAdapter',
        arch='vit-adapter-b',
        drop_path_rate=0.3,
        pretrained=pretrained),
    decode_head=dict(
        type='ProLabUPerHead',
        embed_dim=768,
        in_channels=[768, 768, 768, 768],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=512,
        dropout_ratio=0.1,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='PropertyCosineLoss', loss_weight=1.0)),
    auxiliary_head=dict(
        type='ProLabFCNHead',
        embed_dim=768,
        in_channels=768,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='PropertyCosineLoss', loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='slide'))
