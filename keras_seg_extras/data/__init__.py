"""keras_seg_extras.data"""
