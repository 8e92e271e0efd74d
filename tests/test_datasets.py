"""Loaders for user data, on small files written here in the real formats (no downloads)."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from bitnas.evaluators import DataOptions, DatasetError, load_dataset


def _write_cifar(root, per_batch=20, test=30, seed=0):
    """CIFAR-10's python layout: pickled dicts with b'data' (N x 3072 uint8, channel-major) and b'labels'."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", test)]:
        labels = [int(i % 10) for i in range(n)]
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        data[:, 0] = np.array(labels, dtype=np.uint8) * 20  # the red top-left pixel encodes the label
        with open(root / name, "wb") as handle:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [f"{i}.png".encode() for i in range(n)]}, handle, protocol=2)
    return root


def test_cifar10_reads_the_pickle_layout_keeps_test_batch_and_splits_train_val(tmp_path):
    root = _write_cifar(tmp_path / "cifar-10-batches-py")
    data = load_dataset("cifar10", 0, DataOptions(path=str(tmp_path), normalise="none"))
    assert data.input_shape == (3, 32, 32) and data.num_classes == 10
    assert len(data.test) == 30 and len(data.train) + len(data.val) == 100
    assert len(data.val) == 20 and np.bincount(data.val.labels.numpy()).tolist() == [2] * 10  # stratified, 15/85
    # pixel layout: channel-major rows, scaled to [0, 1]
    first = pickle.load(open(root / "test_batch", "rb"), encoding="bytes")
    assert torch.allclose(data.test.images[0], torch.from_numpy(first[b"data"][0].reshape(3, 32, 32) / 255.0).float())
    assert torch.equal(data.test.labels, torch.tensor(first[b"labels"]))


def test_cifar10_split_is_seeded_and_normalised_per_channel(tmp_path):
    _write_cifar(tmp_path)
    a = load_dataset("cifar10", 1, DataOptions(path=str(tmp_path)))
    b = load_dataset("cifar10", 2, DataOptions(path=str(tmp_path)))
    assert not torch.equal(a.val.labels, b.val.labels) or not torch.equal(a.val.images, b.val.images)
    means = a.train.images.mean(dim=(0, 2, 3))
    assert torch.allclose(means, torch.zeros(3), atol=1e-4)
    resized = load_dataset("cifar10", 1, DataOptions(path=str(tmp_path), image_size=16))
    assert resized.input_shape == (3, 16, 16) and len(resized.test) == 30


@pytest.mark.parametrize("problem", ["missing", "file", "no_batches", "garbage", "wrong_shape", "code"])
def test_bad_cifar10_paths_are_one_clear_line(tmp_path, problem):
    root = tmp_path / "cifar"
    if problem == "file":
        root.write_text("not a directory")
    elif problem == "no_batches":
        root.mkdir()
    elif problem in ("garbage", "wrong_shape", "code"):
        _write_cifar(root)
        target = root / "data_batch_3"
        if problem == "garbage":
            target.write_bytes(b"\x00\x01 this is no pickle")
        elif problem == "wrong_shape":
            target.write_bytes(pickle.dumps({b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 1, 2, 3]}))
        else:  # a pickle that would run code when loaded must be refused, not executed
            target.write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(DatasetError) as caught:
        load_dataset("cifar10", 0, DataOptions(path=str(root)))
    message = str(caught.value)
    assert "\n" not in message and str(root) in message
    expected = {"missing": "not found", "file": "is a file", "no_batches": "missing data_batch_1",
                "garbage": "not a CIFAR-10 python batch", "wrong_shape": "N x 3072", "code": "refuses to construct"}
    assert expected[problem] in message
    assert not (tmp_path / "pwned").exists()


class _Exploit:
    def __reduce__(self):
        return (open, ("/nonexistent-dir/pwned", "w"))


def test_cifar10_needs_a_path():
    with pytest.raises(DatasetError, match="dataset cifar10 needs a path"):
        load_dataset("cifar10", 0, DataOptions())


def _write_folder(root, classes=("cat", "dog", "emu"), per_class=20, size=(12, 12), mode="RGB"):
    rng = np.random.default_rng(0)
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
            Image.fromarray(pixels, mode=mode).save(root / name / f"{i:03d}.png")
    return root


def test_imagefolder_reads_one_folder_per_class_with_a_70_15_15_split(tmp_path):
    root = _write_folder(tmp_path / "pets")
    data = load_dataset("imagefolder", 0, DataOptions(path=str(root), normalise="none"))
    assert data.class_names == ("cat", "dog", "emu") and data.num_classes == 3
    assert data.input_shape == (3, 12, 12)
    assert (len(data.train), len(data.val), len(data.test)) == (42, 9, 9)
    for split in (data.train, data.val, data.test):
        assert np.bincount(split.labels.numpy()).tolist() == [len(split) // 3] * 3
    # every image of the folder is in exactly one split, pixel for pixel
    on_disk = {np.asarray(Image.open(f)).tobytes() for f in root.glob("*/*.png")}
    loaded = [(x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8).tobytes()
              for s in (data.train, data.val, data.test) for x in s.images]
    assert set(loaded) == on_disk and len(loaded) == len(on_disk)


def test_imagefolder_grey_images_resized(tmp_path):
    root = _write_folder(tmp_path / "grey", size=(20, 14), mode="L", per_class=7)
    with pytest.raises(DatasetError, match="set data.image_size"):
        load_dataset("imagefolder", 0, DataOptions(path=str(root)))
    data = load_dataset("imagefolder", 0, DataOptions(path=str(root), image_size=10))
    assert data.input_shape == (1, 10, 10)


def test_bad_imagefolder_is_one_clear_line(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    Image.new("RGB", (8, 8)).save(root / "lonely.png")
    with pytest.raises(DatasetError, match=r"flat: expected a directory with one sub-folder of images .* found 0"):
        load_dataset("imagefolder", 0, DataOptions(path=str(root)))
    broken = _write_folder(tmp_path / "broken", per_class=3)
    (broken / "dog" / "004.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"004.png: not a readable image"):
        load_dataset("imagefolder", 0, DataOptions(path=str(broken)))
