import gzip
import struct

import numpy as np
import pytest
import tensorflow as tf
from conftest import EMBEDDED_MNIST, tiny_config
from PIL import Image

import data
import utils
from errors import UserError

v1 = tf.compat.v1


def idx_bytes(array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_embedded_mnist_loads_with_matching_labels():
    images, labels = data.load_mnist_like(str(EMBEDDED_MNIST))
    assert images.shape == (60000, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (60000,) and set(np.unique(labels)) == set(range(10))
    test_images, _ = data.load_mnist_like(str(EMBEDDED_MNIST), split="test")
    assert test_images.shape == (10000, 28, 28, 1)


def test_idx_round_trip_raw_and_gzip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(array))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(array)))
    assert np.array_equal(data.read_idx(str(tmp_path / "a")), array)
    assert np.array_equal(data.read_idx(str(tmp_path / "a.gz")), array)


@pytest.mark.parametrize("raw,message", [
    (b"", "too short"),
    (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
    (b"PK\x03\x04" + b"\x00" * 20, "not an IDX file"),
    (idx_bytes(np.zeros((2, 3), np.uint8))[:-1], "payload is 5 bytes but the header says 6"),
    (struct.pack(">BBBBIII", 0, 0, 0x08, 3, 100000, 100000, 100000), "refusing"),
])
def test_corrupt_idx_gets_clear_error(tmp_path, raw, message):
    path = tmp_path / "bad-idx"
    path.write_bytes(raw)
    with pytest.raises(UserError, match=message):
        data.read_idx(str(path))


def test_folder_listing_is_recursive_sorted_and_skips_non_images(tmp_path, caplog):
    folder = tmp_path / "pics"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(folder / "b.png")
    Image.new("RGB", (8, 8), "blue").save(folder / "sub" / "a.JPG")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.png").write_text("hello")
    (folder / "ignored.txt").write_text("not matched")
    files = data.list_image_files(str(folder), "*.jpg,*.png")
    assert [p.split("pics/")[1] for p in files] == ["b.png", "sub/a.JPG"]
    assert "skipped 2 of 4 files" in caplog.text


def test_pipeline_crop_and_resize_match_the_pillow_reference(tmp_path, celeba_dir):
    config = tiny_config(tmp_path, dataset="celebA", data_dir=str(celeba_dir), input_height=54, crop=True,
                         output_height=32, c_dim=3)
    files = data.list_image_files(str(celeba_dir / "celebA"), config.input_fname_pattern)[:4]
    with tf.Graph().as_default(), v1.Session() as session:
        path = v1.placeholder(tf.string, [])
        image = data._load_image(path, config)
        piped = [session.run(image, {path: f}) for f in files]
    for f, result in zip(files, piped, strict=True):
        reference = utils.center_crop_resize(np.asarray(Image.open(f)), 54, 54, 32, 32)
        assert result.shape == reference.shape == (32, 32, 3)
        # TF's antialiased bilinear and Pillow's BILINEAR are the same triangle filter;
        # only rounding of JPEG decoding and resampling differ.
        assert np.abs(result - reference).mean() < 0.01
        assert np.abs(result - reference).max() < 0.1


def test_mnist_batches_are_scaled_and_labelled(tmp_path):
    config = tiny_config(tmp_path, output_height=28, batch_size=8)
    source = data.open_source(config)
    with tf.Graph().as_default():
        batches = data.input_batches(source, config)
        with v1.Session() as session:
            session.run(batches.initializer, batches.feed_dict)
            images, labels = session.run([batches.images, batches.labels])
    assert images.shape == (8, 28, 28, 1) and labels.shape == (8,)
    assert images.min() >= -1 and images.max() <= 1 and images.min() < -0.99
