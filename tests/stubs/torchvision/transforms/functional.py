"""torchvision.transforms.functional.resize/to_pil_image for PIL inputs, as torchvision does them."""
import numpy as np
from PIL import Image


def to_pil_image(pic):
    if isinstance(pic, Image.Image):
        return pic
    arr = np.asarray(pic)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return Image.fromarray(arr)


def resize(img, size, interpolation=Image.BILINEAR, max_size=None, antialias=None):
    """torchvision semantics for a PIL image and an explicit [h, w] size: PIL bilinear."""
    if isinstance(size, int):
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = size, int(size * long / short)
        size = [new_long, new_short] if w <= h else [new_short, new_long]
        size = [size[0], size[1]] if w <= h else [size[0], size[1]]
    h, w = size
    resample = getattr(interpolation, "value", interpolation)
    if isinstance(resample, str):
        resample = {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST, "bicubic": Image.BICUBIC}[resample]
    return img.resize((int(w), int(h)), resample)
