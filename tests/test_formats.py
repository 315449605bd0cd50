"""datasets/formats.py: where data is and how it is stored: the embedded MNIST, IDX files (and corrupt ones),
image-folder listings that skip what cannot be used, and CIFAR-10 as binary batches or class folders."""

import gzip
import struct
import zlib

import numpy as np
import pytest
from conftest import EMBEDDED_MNIST, idx_bytes, tiny_config, write_cifar_class_folders
from PIL import Image

from datasets import formats
from datasets import pipeline as data
from runtime.errors import UserError


def test_embedded_mnist_loads_with_matching_labels():
    images, labels = formats.load_mnist_like(str(EMBEDDED_MNIST))
    assert images.shape == (60000, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (60000,) and set(np.unique(labels)) == set(range(10))
    test_images, _ = formats.load_mnist_like(str(EMBEDDED_MNIST), split="test")
    assert test_images.shape == (10000, 28, 28, 1)


def test_mnist_without_a_data_folder_falls_back_to_the_embedded_copy_at_the_repository_root(tmp_path):
    """The default run works offline: no data/mnist/ means embedded_data/mnist/ at the repository root (not
    beside datasets/formats.py, which sits one level down)."""
    assert formats.dataset_directory("mnist", str(tmp_path)) == str(EMBEDDED_MNIST)
    assert formats.dataset_directory("celebA", str(tmp_path)) == str(tmp_path / "celebA")  # nothing embedded


def test_idx_round_trip_raw_and_gzip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(array))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(array)))
    assert np.array_equal(formats.read_idx(str(tmp_path / "a")), array)
    assert np.array_equal(formats.read_idx(str(tmp_path / "a.gz")), array)


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
        formats.read_idx(str(path))


def test_folder_listing_is_recursive_sorted_and_skips_non_images(tmp_path, caplog):
    folder = tmp_path / "pics"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(folder / "b.png")
    Image.new("RGB", (8, 8), "blue").save(folder / "sub" / "a.JPG")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.png").write_text("hello")
    (folder / "ignored.txt").write_text("not matched")
    listing = formats.list_image_files(str(folder), "*.jpg,*.png")
    assert [p.split("pics/")[1] for p in listing.files] == ["b.png", "sub/a.JPG"]
    assert listing.sizes == [(8, 8), (8, 8)]
    assert "skipped 2 of 4 files" in caplog.text and "1 zero-byte, 1 not an image" in caplog.text


def png_claiming(width, height):
    """A valid PNG signature and header claiming width x height pixels, with no pixel data."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(
        b"IEND", b"")


def test_decompression_bombs_and_undecodable_formats_are_skipped_by_their_headers(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(formats, "MAX_IMAGE_PIXELS", 40 * 40)
    Image.new("RGB", (40, 40)).save(tmp_path / "at_limit.png")
    Image.new("RGB", (41, 40)).save(tmp_path / "over_limit.png")
    (tmp_path / "bomb.png").write_bytes(png_claiming(100_000, 100_000))  # Pillow's own bomb error
    Image.new("RGB", (8, 8)).convert("P").save(tmp_path / "palette.bmp")  # TF would ignore the palette
    Image.new("RGB", (8, 8)).save(tmp_path / "image.tif", format="TIFF")
    listing = formats.list_image_files(str(tmp_path), "*")
    assert [p.rsplit("/", 1)[1] for p in listing.files] == ["at_limit.png"]
    assert "skipped 4 of 5 files" in caplog.text
    assert "2 over the pixel limit, 1 not an image, 1 unsupported BMP" in caplog.text


def test_train_size_stops_the_listing_early(tmp_path):
    for index in range(6):
        Image.new("L", (8, 8), index).save(tmp_path / f"{index}.png")
    assert len(formats.list_image_files(str(tmp_path), "*.png", limit=4).files) == 4


def write_idx_dataset(directory, count):
    directory.mkdir(parents=True)
    images = np.random.default_rng(0).integers(0, 256, (count, 28, 28), dtype=np.uint8)
    (directory / "train-images-idx3-ubyte").write_bytes(idx_bytes(images))
    (directory / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.arange(count) % 10))


def test_fashion_is_found_in_fashion_mnist_and_a_missing_file_names_its_download(tmp_path):
    config = tiny_config(tmp_path, dataset="fashion", data_dir=str(tmp_path))
    with pytest.raises(UserError, match=r"fashion: no train-images-idx3-ubyte\[.gz\] found; put the fashion IDX files "
                                        r"there \(python download.py fashion fetches them\)"):
        data.open_source(config)
    write_idx_dataset(tmp_path / "fashion-mnist", 8)
    source = data.open_source(config)
    assert source.num_examples == 8 and "fashion-mnist" in source.description


def test_cifar10_binary_batches_load_as_hwc_images_with_labels(cifar_dir):
    data_dir, expected_images, expected_labels = cifar_dir
    images, labels = formats.load_cifar10(str(data_dir / "cifar10"))
    assert images.shape == (10, 32, 32, 3) and images.dtype == np.uint8 and labels.dtype == np.int64
    assert np.array_equal(images, expected_images[:10]) and np.array_equal(labels, expected_labels[:10])
    test_images, test_labels = formats.load_cifar10(str(data_dir / "cifar10"), split="test")
    assert np.array_equal(test_images, expected_images[10:]) and list(test_labels) == [0, 1]


@pytest.mark.parametrize("size,message", [
    (3073 * 2 + 5, "6151 bytes is not a whole number of 3073-byte CIFAR-10 records"),
    (0, "0 bytes is not a whole number"),
])
def test_cifar10_file_of_the_wrong_size_is_a_clear_error(cifar_dir, size, message):
    data_dir = cifar_dir[0]
    (data_dir / "cifar10" / "cifar-10-batches-bin" / "data_batch_3.bin").write_bytes(b"\0" * size)
    with pytest.raises(UserError, match=f"data_batch_3.bin: {message}.*python download.py cifar10"):
        formats.load_cifar10(str(data_dir / "cifar10"))


def test_cifar10_missing_batch_names_the_file_and_the_download(cifar_dir):
    data_dir = cifar_dir[0]
    (data_dir / "cifar10" / "cifar-10-batches-bin" / "data_batch_5.bin").unlink()
    with pytest.raises(UserError, match=r"data_batch_5.bin: not found; .*\(python download.py cifar10 fetches it"):
        formats.load_cifar10(str(data_dir / "cifar10"))


def test_cifar10_class_folders_give_canonical_labels_exact_png_pixels_and_classes_interleaved(tmp_path):
    directory = tmp_path / "cifar10"
    written = write_cifar_class_folders(directory / "train", {"truck": 2, "airplane": 3, "cat": 1})
    written_test = write_cifar_class_folders(directory / "test", {"dog": 1, "frog": 1}, seed=1)
    images, labels, origin = formats.read_cifar10(str(directory))
    # Sorted files, then one file of each class in turn: airplane 0, cat 0, truck 0, airplane 1, truck 1, airplane 2
    assert labels.dtype == np.int64 and list(labels) == [0, 3, 9, 0, 9, 0]
    expected = [f"{name}/{i:04d}.png" for name, i in
                (("airplane", 0), ("cat", 0), ("truck", 0), ("airplane", 1), ("truck", 1), ("airplane", 2))]
    assert images.dtype == np.uint8 and images.shape == (6, 32, 32, 3)
    for image, name in zip(images, expected, strict=True):
        assert np.array_equal(image, written[str(directory / "train" / name)])  # PNG is lossless: bit for bit
    assert origin == "PNG class folders"
    test_images, test_labels = formats.load_cifar10(str(directory), "test")
    assert list(test_labels) == [5, 6]
    assert np.array_equal(test_images[0], written_test[str(directory / "test" / "dog" / "0000.png")])


def test_cifar10_jpeg_class_folders_decode_near_the_pixels_written_and_say_they_are_lossy(tmp_path):
    directory = tmp_path / "data" / "cifar10"
    blocks = np.random.default_rng(2).integers(0, 256, (2, 4, 4, 3))
    smooth = np.kron(blocks, np.ones((1, 8, 8, 1))).astype(np.uint8)  # two images of 8x8 colour blocks
    for name, pixels in (("ship", smooth[1]), ("horse", smooth[0])):
        (directory / "train" / name).mkdir(parents=True)
        Image.fromarray(pixels).save(directory / "train" / name / "0000.jpg", quality=95)
    images, labels, origin = formats.read_cifar10(str(directory))
    assert list(labels) == [7, 8] and origin == "lossy JPEG class folders"
    # Within JPEG's error of the image written for that class (chroma subsampling blurs the block edges),
    # and far from the other one (random blocks differ by ~85 levels on average).
    error = np.abs(images.astype(int) - smooth).mean(axis=(1, 2, 3))
    swapped = np.abs(images.astype(int) - smooth[::-1]).mean(axis=(1, 2, 3))
    assert (error < 10).all() and (swapped > 40).all()
    config = tiny_config(tmp_path, dataset="cifar10", data_dir=str(tmp_path / "data"), output_height=32, batch_size=2)
    assert data.open_source(config).description == f"CIFAR-10 lossy JPEG class folders in {directory}"


def test_cifar10_binary_batches_win_over_class_folders(cifar_dir):
    data_dir, expected_images, expected_labels = cifar_dir
    write_cifar_class_folders(data_dir / "cifar10" / "train", {"bird": 3})
    images, labels, origin = formats.read_cifar10(str(data_dir / "cifar10"))
    assert origin == "binary batches" and np.array_equal(images, expected_images[:10])
    assert np.array_equal(labels, expected_labels[:10])


def test_cifar10_without_either_layout_or_with_an_unknown_class_folder_is_a_one_line_error(tmp_path):
    directory = tmp_path / "cifar10"
    directory.mkdir()
    with pytest.raises(UserError, match=r"no CIFAR-10 there: neither the binary version \(cifar-10-batches-bin/.*"
                                        r"nor class folders \(train/<class name>/"):
        formats.load_cifar10(str(directory))
    write_cifar_class_folders(directory / "train", {"cat": 1, "kitten": 1})
    with pytest.raises(UserError, match=r"train/kitten: not a CIFAR-10 class folder; name the class folders "
                                        "airplane, automobile, bird"):
        formats.load_cifar10(str(directory))
    (directory / "train" / "kitten" / "0000.png").unlink()
    (directory / "train" / "kitten").rmdir()
    Image.new("RGB", (28, 28)).save(directory / "train" / "cat" / "big.png")
    with pytest.raises(UserError, match="cat/big.png: 28x28 pixels, but CIFAR-10 images are 32x32"):
        formats.load_cifar10(str(directory))


def test_idx_header_whose_size_overflows_int64_is_refused(tmp_path):
    # 2**31 cubed elements: the product wraps around in int64 arithmetic
    path = tmp_path / "huge-idx"
    path.write_bytes(struct.pack(">BBBBIIII", 0, 0, 0x08, 4, 2**31, 2**31, 2**31, 4))
    with pytest.raises(UserError, match="refusing"):
        formats.read_idx(str(path))


@pytest.mark.parametrize("raw,message", [
    (struct.pack(">BBBBIII", 0, 0, 0x08, 3, 0, 2**31, 2**31), "refusing"),
    (gzip.compress(b"\x00" * 64)[:-12] + b"\x00" * 12, "corrupt"),
])
def test_zero_dimension_headers_and_corrupt_gzip_get_clear_errors(tmp_path, raw, message):
    path = tmp_path / "bad-idx.gz"
    path.write_bytes(raw)
    with pytest.raises(UserError, match=message):
        formats.read_idx(str(path))
