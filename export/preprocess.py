"""How an image becomes the network's input, exactly as in training: size, channels, and the
per-channel normalisation with the training split's statistics (re-derived from the same split,
so the exported model needs no dataset to run)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from bitnas.errors import UserError


MAX_IMAGE_PIXELS = 4096 * 4096  # the network sees at most 1024 x 1024


class ImageError(UserError):
    """An image that cannot be read or used; the message names the file."""


def preprocessing(dataset: str, seed: int, options) -> dict:
    """{channels, size, mean, std, scale}: pixel/255 -> (x - mean) / std, per channel."""
    from bitnas.evaluators import load_dataset

    raw = load_dataset(dataset, seed, options.model_copy(update={"normalise": "none"}))
    images = raw.train.images.numpy()  # in [0, 1]: normalise "none" keeps the pixels' scale
    normalised = options.normalise != "none"
    mean = images.mean(axis=(0, 2, 3)) if normalised else np.zeros(images.shape[1], dtype=np.float32)
    std = images.std(axis=(0, 2, 3)) + 1e-6 if normalised else np.ones(images.shape[1], dtype=np.float32)
    return {"channels": int(raw.in_channels), "size": int(raw.input_size), "mean": [float(v) for v in mean],
            "std": [float(v) for v in std], "class_names": list(raw.class_names) or [str(c) for c in range(raw.num_classes)]}


def load_image(path: Path, prep: dict) -> np.ndarray:
    """(C, H, W) float32, normalised like the training images."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # PIL only warns between MAX_IMAGE_PIXELS and twice that: refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                if opened.width * opened.height > MAX_IMAGE_PIXELS:
                    raise ImageError(f"{path}: {opened.width}x{opened.height} pixels, over the {MAX_IMAGE_PIXELS:,} "
                                     "an image may have")
                image = opened.convert("L" if prep["channels"] == 1 else "RGB")
            if image.size != (prep["size"], prep["size"]):
                image = image.resize((prep["size"], prep["size"]), Image.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise ImageError(f"{path}: image not found") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as error:
        if isinstance(error, ImageError):
            raise
        raise ImageError(f"{path}: not an image PIL can read ({error})") from None
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    mean = np.asarray(prep["mean"], dtype=np.float32)[:, None, None]
    std = np.asarray(prep["std"], dtype=np.float32)[:, None, None]
    return ((pixels - mean) / std).astype(np.float32)
