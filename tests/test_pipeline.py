import gzip
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from conftest import EMBEDDED_MNIST, tiny_config
from PIL import Image

import config as config_lib
from datasets import formats
from datasets import pipeline as data
from runtime.errors import UserError

v1 = tf.compat.v1


def idx_bytes(array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.astype(np.uint8).tobytes()


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


def test_nothing_usable_or_less_than_a_batch_after_skipping_is_one_clear_error(tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    (folder / "empty.jpg").write_bytes(b"")
    config = tiny_config(tmp_path, dataset="pics", data_dir=str(tmp_path), c_dim=3)
    with pytest.raises(UserError, match=r"no images matching .*\(skipped 1 zero-byte; first .*empty.jpg: zero-byte\)"):
        data.open_source(config)
    Image.new("RGB", (8, 8)).save(folder / "one.png")
    with pytest.raises(UserError, match="1 examples is fewer than one batch"):
        data.open_source(config)


def test_train_size_stops_the_listing_early(tmp_path):
    for index in range(6):
        Image.new("L", (8, 8), index).save(tmp_path / f"{index}.png")
    assert len(formats.list_image_files(str(tmp_path), "*.png", limit=4).files) == 4


def write_image(path, image, **options):
    image.save(path, **options)
    return path


@pytest.mark.parametrize("c_dim,mode,fmt,expected_mode", [
    (3, "RGBA", "PNG", "RGB"),  # alpha dropped
    (3, "L", "PNG", "RGB"),  # gray repeated
    (3, "RGB", "BMP", "RGB"),
    (1, "RGB", "PNG", "L"),
    (1, "RGB", "BMP", "L"),  # TF's BMP decoder has no 1-channel output
    (1, "L", "JPEG", "L"),
])
def test_images_are_converted_to_the_models_channels(tmp_path, c_dim, mode, fmt, expected_mode):
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 4), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGBA").convert(mode)
    path = write_image(tmp_path / f"image.{fmt.lower()}", image, format=fmt)
    config = tiny_config(tmp_path, dataset="pics", c_dim=c_dim)
    with tf.Graph().as_default(), v1.Session() as session:
        result = session.run(data._load_image(str(path), config))
    expected = np.asarray(Image.open(path).convert(expected_mode)).reshape(16, 16, c_dim)
    assert result.shape == (16, 16, c_dim) and result.dtype == np.uint8
    # RGB -> L is ITU-R 601 in both, rounded differently; TF decodes JPEG with the fast integer IDCT.
    assert np.abs(result.astype(int) - expected).max() <= (2 if fmt == "JPEG" else 1)


@pytest.mark.parametrize("c_dim,mode,expected_mode", [
    (3, "RGBA", "RGB"),  # decode_image(channels=3) refuses these: the alpha is dropped instead
    (3, "RGB", "RGB"),
    (3, "L", "RGB"),
    (1, "RGBA", "L"),
])
def test_webp_files_are_listed_and_decoded_like_pillow(tmp_path, c_dim, mode, expected_mode):
    pixels = np.random.default_rng(1).integers(0, 256, (16, 16, 4), dtype=np.uint8)
    path = write_image(tmp_path / "image.webp", Image.fromarray(pixels, "RGBA").convert(mode), lossless=True)
    assert formats.list_image_files(str(tmp_path), "*.webp").files == [str(path)]
    with tf.Graph().as_default(), v1.Session() as session:
        result = session.run(data._load_image(str(path), tiny_config(tmp_path, dataset="pics", c_dim=c_dim)))
    expected = np.asarray(Image.open(path).convert(expected_mode)).reshape(16, 16, c_dim)
    assert np.abs(result.astype(int) - expected).max() <= (1 if c_dim == 1 else 0)


def test_animated_webp_is_skipped_and_never_reaches_decode_webp(tmp_path, caplog):
    """TF 2.21's decode_webp corrupts the heap on this file (the process aborts)."""
    frames = [Image.new("RGB", (16, 16), color) for color in ("red", "blue")]
    path = write_image(tmp_path / "anim.webp", frames[0], save_all=True, append_images=frames[1:], lossless=True)
    Image.new("RGB", (16, 16)).save(tmp_path / "still.webp", lossless=True)
    assert formats.list_image_files(str(tmp_path), "*.webp").files == [str(tmp_path / "still.webp")]
    assert "1 animated WebP" in caplog.text
    with tf.Graph().as_default(), v1.Session() as session:
        with pytest.raises(tf.errors.InvalidArgumentError, match="WebP Animation"):  # dropped by ignore_errors
            session.run(data._load_image(str(path), tiny_config(tmp_path, dataset="pics", c_dim=3)))


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), color) for color in ("red", "blue")]
    path = write_image(tmp_path / "anim.gif", frames[0], save_all=True, append_images=frames[1:])
    with tf.Graph().as_default(), v1.Session() as session:
        result = session.run(data._load_image(str(path), tiny_config(tmp_path, dataset="pics", c_dim=3)))
    assert (result == [255, 0, 0]).all()


def test_file_that_passes_the_listing_but_fails_to_decode_is_dropped(tmp_path, monkeypatch):
    for index in range(4):
        Image.new("RGB", (16, 16), (index, 0, 0)).save(tmp_path / f"{index}.png")
    (tmp_path / "4.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    monkeypatch.setattr(formats, "_inspect_image", lambda path: ((16, 16), None))
    config = tiny_config(tmp_path, dataset=tmp_path.name, data_dir=str(tmp_path.parent), c_dim=3)
    source = data.open_source(config)
    assert source.num_examples == 5
    with tf.Graph().as_default():
        batches = data.input_batches(source, config)
        with v1.Session() as session:
            session.run(batches.initializer)
            images = np.concatenate([session.run(batches.images) for _ in range(3)])
    assert sorted({int(round((v + 1) * 127.5)) for v in images[:, 0, 0, 0]}) == [0, 1, 2, 3]


@pytest.mark.parametrize("cache", ["memory", "file"])
def test_cache_serves_later_epochs_without_reading_the_files(tmp_path, cache):
    folder = tmp_path / "pics"
    folder.mkdir()
    for index in range(8):
        Image.new("RGB", (16, 16), (index * 10, 0, 0)).save(folder / f"{index}.png")
    config = tiny_config(tmp_path, dataset="pics", data_dir=str(tmp_path), c_dim=3,
                         cache="memory" if cache == "memory" else str(tmp_path / "cache" / "pics"))
    source = data.open_source(config)
    with tf.Graph().as_default():
        batches = data.input_batches(source, config)
        with v1.Session() as session:
            session.run(batches.initializer)
            session.run(batches.images)  # the shuffle buffer after the cache holds all 8 images now
            for path in folder.iterdir():
                path.unlink()
            reds = np.concatenate([session.run(batches.images)[:, 0, 0, 0] for _ in range(8)])
    assert sorted(set(np.round((reds + 1) * 127.5).astype(int))) == list(range(0, 80, 10))


def test_cache_file_name_changes_with_the_files_and_the_preprocessing(tmp_path):
    image = tmp_path / "a.png"
    Image.new("RGB", (16, 16)).save(image)
    config = tiny_config(tmp_path, dataset="pics", c_dim=3, cache=str(tmp_path / "c"))
    first = data.cache_path(config, [str(image)])
    assert first == data.cache_path(config, [str(image)]) and first.startswith(str(tmp_path / "c-"))
    assert first != data.cache_path(tiny_config(tmp_path, dataset="pics", c_dim=3, cache=str(tmp_path / "c"),
                                                output_height=32), [str(image)])
    Image.new("RGB", (16, 16), "white").save(image)
    assert first != data.cache_path(config, [str(image)])
    assert data.cache_path(tiny_config(tmp_path, dataset="pics", cache="memory"), [str(image)]) == ""


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


def cifar_records(images_chw, labels):
    return np.concatenate([np.asarray(labels, np.uint8)[:, None], images_chw.reshape(len(labels), -1)], axis=1)


@pytest.fixture
def cifar_dir(tmp_path):
    """data_dir with cifar10/cifar-10-batches-bin/: five 2-image training batches and a test batch."""
    folder = tmp_path / "data" / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    images = np.random.default_rng(0).integers(0, 256, (12, 3, 32, 32), dtype=np.uint8)
    labels = np.arange(12) % 10
    for batch in range(5):
        (folder / f"data_batch_{batch + 1}.bin").write_bytes(
            cifar_records(images[2 * batch:2 * batch + 2], labels[2 * batch:2 * batch + 2]).tobytes())
    (folder / "test_batch.bin").write_bytes(cifar_records(images[10:], labels[10:]).tobytes())
    return tmp_path / "data", images.transpose(0, 2, 3, 1), labels


def test_cifar10_binary_batches_load_as_hwc_images_with_labels(cifar_dir):
    data_dir, expected_images, expected_labels = cifar_dir
    images, labels = formats.load_cifar10(str(data_dir / "cifar10"))
    assert images.shape == (10, 32, 32, 3) and images.dtype == np.uint8 and labels.dtype == np.int64
    assert np.array_equal(images, expected_images[:10]) and np.array_equal(labels, expected_labels[:10])
    test_images, test_labels = formats.load_cifar10(str(data_dir / "cifar10"), split="test")
    assert np.array_equal(test_images, expected_images[10:]) and list(test_labels) == [0, 1]


def test_cifar10_trains_unconditionally_at_32x32_rgb_by_default(tmp_path, cifar_dir):
    data_dir, expected_images, _ = cifar_dir
    resolved = config_lib.resolve(config_lib.Config(dataset="cifar10"))
    assert (resolved.output_height, resolved.output_width, resolved.c_dim, resolved.y_dim, resolved.crop) == (
        32, 32, 3, 0, False)
    config = tiny_config(tmp_path, dataset="cifar10", data_dir=str(data_dir), output_height=32)
    source = data.open_source(config)
    with tf.Graph().as_default():
        batches = data.input_batches(source, config)
        with v1.Session() as session:
            session.run(batches.initializer, batches.feed_dict)
            images = session.run(batches.images)
    assert batches.labels is None and images.shape == (4, 32, 32, 3)
    pixels = np.round((images + 1) * 127.5).astype(np.uint8)
    assert all(any(np.array_equal(p, e) for e in expected_images) for p in pixels)


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


def write_cifar_class_folders(split_folder, per_class, suffix=".png", seed=0):
    """`split_folder`/<class>/NNNN<suffix> for each {class name: count}; returns {path: pixels written}."""
    rng = np.random.default_rng(seed)
    written = {}
    for name, count in per_class.items():
        (split_folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            path = split_folder / name / f"{i:04d}{suffix}"
            Image.fromarray(pixels).save(path, quality=95)
            written[str(path)] = pixels
    return written


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


def test_a_conditional_model_on_an_image_folder_is_refused_in_one_line(tmp_path, generated_celeba_dir):
    """An image folder has no labels: every example would be class 0 (issue 24, bug 3)."""
    folder = dict(dataset="celebA", data_dir=str(generated_celeba_dir), crop=False)
    config = tiny_config(tmp_path, y_dim=10, **folder)
    with pytest.raises(UserError, match=r"^--y_dim 10: .*celebA has no labels .*; pass --y_dim 0") as refused:
        data.open_source(config)
    assert "\n" not in str(refused.value)
    assert data.open_source(tiny_config(tmp_path, **folder)).files  # unconditional: fine


@pytest.mark.parametrize("y_dim", [1, 5, 9])
def test_y_dim_below_the_largest_label_plus_one_is_refused(tmp_path, y_dim):
    """MNIST with --y_dim 5 would make labels 5-9 all-zero one-hot vectors (tf.one_hot does so silently)."""
    with pytest.raises(UserError, match=rf"^--y_dim {y_dim}: the labels of mnist IDX files in .* go up to 9; "
                                        r"pass --y_dim 10 or more \(or 0: unconditional\)$"):
        data.open_source(tiny_config(tmp_path, y_dim=y_dim))


@pytest.mark.parametrize("y_dim", [0, 10, 12])
def test_y_dim_of_at_least_the_largest_label_plus_one_or_zero_is_accepted(tmp_path, y_dim):
    source = data.open_source(tiny_config(tmp_path, y_dim=y_dim))
    assert source.arrays[1].max() == 9


def test_cifar10_class_folders_carry_labels_a_conditional_model_can_use(tmp_path):
    """Class folders are labelled (CIFAR-10's class order), so they may train a conditional model; the
    check counts the labels actually read: 'ship' is class 8."""
    write_cifar_class_folders(tmp_path / "data" / "cifar10" / "train", {"airplane": 2, "ship": 2})
    settings = dict(dataset="cifar10", data_dir=str(tmp_path / "data"), output_height=32, batch_size=2)
    assert list(data.open_source(tiny_config(tmp_path, y_dim=9, **settings)).arrays[1]) == [0, 8, 0, 8]
    with pytest.raises(UserError, match=r"^--y_dim 8: the labels of CIFAR-10 .* go up to 8; pass --y_dim 9 or more"):
        data.open_source(tiny_config(tmp_path, y_dim=8, **settings))
