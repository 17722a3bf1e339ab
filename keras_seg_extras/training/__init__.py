"""keras_seg_extras.training"""
