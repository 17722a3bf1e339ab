"""keras_seg_extras.models"""
