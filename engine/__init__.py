"""Maskmill's ML library: SAM-family models, predictors, automatic mask generation, mask formats.

A plain library: it imports torch, numpy, OpenCV and pycocotools, never Django.
"""
