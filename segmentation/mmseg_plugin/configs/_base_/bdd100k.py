# BDD100K (the Cityscapes classes) with the Cityscapes pipelines and loaders.
_base_ = ['./cityscapes.py']

data_root = 'data/bdd100k/'
train_dataloader = dict(dataset=dict(
    type='BDD100KDataset',
    data_root=data_root,
    data_prefix=dict(img_path='images/10k/train', seg_map_path='labels/sem_seg/masks/train')))
val_dataloader = dict(dataset=dict(
    type='BDD100KDataset',
    data_root=data_root,
    data_prefix=dict(img_path='images/10k/val', seg_map_path='labels/sem_seg/masks/val')))
test_dataloader = val_dataloader
