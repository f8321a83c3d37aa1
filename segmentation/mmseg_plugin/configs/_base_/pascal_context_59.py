# Pascal Context 59 on the shared pipelines and loaders (crop 512, scale (2048, 512)).
_base_ = ['./seg_loaders.py']

data_root = 'data/VOCdevkit/VOC2010/'
train_dataloader = dict(dataset=dict(
    type='PascalContextDataset59',
    data_root=data_root,
    data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassContext'),
    ann_file='ImageSets/SegmentationContext/train.txt'))
val_dataloader = dict(dataset=dict(
    type='PascalContextDataset59',
    data_root=data_root,
    data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassContext'),
    ann_file='ImageSets/SegmentationContext/val.txt'))
test_dataloader = val_dataloader
