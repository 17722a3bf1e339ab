"""keras_seg_extras.metrics"""
