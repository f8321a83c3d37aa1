# COCO-Stuff-164k on the shared pipelines and loaders (crop 512, scale (2048, 512)); its labels
# count from 0, so the annotations load without reduce_zero_label.
_base_ = ['./seg_loaders.py']

train_pipeline = [dict(type='LoadAnnotations') if t.type == 'LoadAnnotations' else t for t in _base_.train_pipeline]
test_pipeline = [dict(type='LoadAnnotations') if t.type == 'LoadAnnotations' else t for t in _base_.test_pipeline]
data_root = 'data/coco_stuff164k'
train_dataloader = dict(dataset=dict(
    type='COCOStuffDataset',
    data_root=data_root,
    data_prefix=dict(img_path='images/train2017', seg_map_path='annotations/train2017'),
    pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(
    type='COCOStuffDataset',
    data_root=data_root,
    data_prefix=dict(img_path='images/val2017', seg_map_path='annotations/val2017'),
    pipeline=test_pipeline))
test_dataloader = val_dataloader
