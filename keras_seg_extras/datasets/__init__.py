"""keras_seg_extras.datasets"""
