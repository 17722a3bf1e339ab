"""keras_seg_extras.inference"""
