"""keras_seg_extras.losses"""
