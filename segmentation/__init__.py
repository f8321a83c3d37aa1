"""The segmentation stack: ViT-Adapter + UperNet with a one-hot or ProLab property head."""
