"""keras_seg_extras.callbacks"""
