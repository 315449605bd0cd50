"""datasets/pipeline.py: open_source's checks, decoding to the model's channels, the --cache, batches of each
kind of dataset, labels against --y_dim, image folders of CelebA-sized JPEGs, and bad input through main.run."""

import fcntl
import logging
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, tiny_config, write_cifar_class_folders
from PIL import Image

import config as config_lib
import main
import utils
from datasets import formats
from datasets import pipeline as data
from runtime.errors import UserError

v1 = tf.compat.v1


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


# --- Image folders of CelebA-sized JPEGs: generated by the test, and the real ones from ../shared as an extra --------


@pytest.fixture
def messy_folder(celeba_like_dir):
    """24 CelebA-sized jpgs plus every kind of file a scraped folder holds: 3 to skip, 3 to use."""
    folder = celeba_like_dir / "celebA"
    real = (folder / "000001.jpg").read_bytes()
    (folder / "a_zero_byte.jpg").write_bytes(b"")
    (folder / "b_text.jpg").write_text("<html>404 Not Found</html>")
    (folder / "c_truncated.jpg").write_bytes(real[: len(real) // 2])
    (folder / "d_trailing_data.jpg").write_bytes(real + b"\0" * 100)  # valid: data after the end marker
    Image.new("RGB", (40, 50), "green").save(folder / "e_smaller.png")
    Image.open(folder / "000002.jpg").convert("L").save(folder / "f_gray.jpg")
    return celeba_like_dir


@pytest.mark.parametrize("cache", ["", "memory", "file"])
def test_messy_folder_skips_bad_files_with_counts_and_iterates_epochs(tmp_path, messy_folder, caplog, cache):
    caplog.set_level(logging.INFO, logger="dcgan")
    config = tiny_config(tmp_path, dataset="celebA", data_dir=str(messy_folder), input_height=54, crop=True, c_dim=3,
                         cache=str(tmp_path / "cache" / "celebA") if cache == "file" else cache)
    source = data.open_source(config)
    assert source.num_examples == 27
    assert "skipped 3 of 30 files" in caplog.text
    assert "1 zero-byte, 1 not an image, 1 truncated/corrupt (first " in caplog.text
    assert "1 of 27 images are smaller than the 54x54 crop" in caplog.text
    assert "images come in 2 sizes (26 of 27 are 109x89)" in caplog.text
    with tf.Graph().as_default():
        batches = data.input_batches(source, config)
        with v1.Session() as session:
            session.run(batches.initializer, batches.feed_dict)
            images = np.concatenate([session.run(batches.images) for _ in range(14)])  # 2 epochs and more
    assert images.shape == (56, 16, 16, 3) and images.min() >= -1 and images.max() <= 1
    assert len({image.tobytes() for image in images}) == 26  # d_trailing_data.jpg is 000001.jpg
    if cache == "file":
        assert any(p.name.startswith("celebA-") for p in (tmp_path / "cache").iterdir())


def test_pipeline_crop_and_resize_match_the_pillow_reference(tmp_path, celeba_like_dir):
    config = tiny_config(tmp_path, dataset="celebA", data_dir=str(celeba_like_dir), input_height=54, crop=True,
                         output_height=32, c_dim=3)
    files = formats.list_image_files(str(celeba_like_dir / "celebA"), config.input_fname_pattern).files[:4]
    with tf.Graph().as_default(), v1.Session() as session:
        path = v1.placeholder(tf.string, [])
        image = data._load_image(path, config)
        piped = [session.run(image, {path: f}) / 127.5 - 1.0 for f in files]
    for f, result in zip(files, piped, strict=True):
        reference = utils.center_crop_resize(np.asarray(Image.open(f)), 54, 54, 32, 32)
        assert result.shape == reference.shape == (32, 32, 3)
        # TF's antialiased bilinear and Pillow's BILINEAR are the same triangle filter;
        # only rounding of JPEG decoding and resampling differ.
        assert np.abs(result - reference).mean() < 0.01
        assert np.abs(result - reference).max() < 0.1


# --- A file --cache survives a writer killed mid-epoch (TensorFlow's lockfile stays behind) --------------------------


# Builds the pipeline of `config` and dies by SIGKILL while decoding the image named
# kill.png, i.e. while TensorFlow is writing the cache of the first epoch.
_DYING_WRITER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, sys.argv[1])
    import tests.conftest as conftest
    from datasets import pipeline as data
    from runtime.tf_runtime import tf

    real_load_image = data._load_image

    def load_image_or_die(path, config):
        dying = tf.py_function(lambda p: os.kill(os.getpid(), signal.SIGKILL) if p.numpy().endswith(b"kill.png")
                               else 0, [path], tf.int32)
        with tf.control_dependencies([dying]):
            return tf.identity(real_load_image(path, config))

    data._load_image = load_image_or_die
    config = conftest.tiny_config(__import__("pathlib").Path(sys.argv[2]), **eval(sys.argv[3]))
    batches = data.input_batches(data.open_source(config), config)
    with tf.compat.v1.Session() as session:
        session.run(batches.initializer)
        while True:
            session.run(batches.images)
""")


def _folder(tmp_path, count):
    folder = tmp_path / "pics"
    folder.mkdir()
    for index in range(count):
        Image.new("RGB", (16, 16), (index * 10, 0, 0)).save(folder / f"{index:02d}.png")
    Image.new("RGB", (16, 16), (250, 0, 0)).save(folder / "kill.png")
    return dict(dataset="pics", data_dir=str(tmp_path), c_dim=3, cache=str(tmp_path / "cache" / "pics"))


def _red_values(config, batches_to_read):
    source = data.open_source(config)
    with tf.Graph().as_default():
        batches = data.input_batches(source, config)
        with v1.Session() as session:
            session.run(batches.initializer)
            reds = np.concatenate([session.run(batches.images)[:, 0, 0, 0] for _ in range(batches_to_read)])
    return np.round((reds + 1) * 127.5).astype(int)


def test_restart_after_a_writer_was_killed_mid_cache_rebuilds_it(tmp_path, caplog):
    overrides = _folder(tmp_path, 11)  # 12 images, 3 batches of 4 per epoch
    result = subprocess.run([sys.executable, "-c", _DYING_WRITER, str(REPO), str(tmp_path), repr(overrides)],
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()[-2000:]
    cache_dir = tmp_path / "cache"
    assert any(name.endswith(".lockfile") for name in os.listdir(cache_dir))  # what used to stop every restart
    config = tiny_config(tmp_path, **overrides)
    with caplog.at_level(logging.WARNING, logger="dcgan"):
        reds = _red_values(config, 9)  # three epochs: the cache is written, then read
    assert "removed the unfinished cache a killed run left" in caplog.text
    assert sorted(set(reds)) == sorted([*range(0, 110, 10), 250])
    assert not any(name.endswith(".lockfile") for name in os.listdir(cache_dir))
    assert any(name.endswith(".index") for name in os.listdir(cache_dir))


def test_cache_being_written_by_a_live_process_is_one_line(tmp_path):
    config = tiny_config(tmp_path, **_folder(tmp_path, 3))
    prefix = data.cache_path(config, data.open_source(config).files)
    with open(prefix + ".lock", "a") as other_writer:  # another open file: its flock excludes ours
        fcntl.flock(other_writer, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UserError, match=r"^--cache .*pics-[0-9a-f]{16}: another running process is writing"):
            data.claim_file_cache(prefix)


# --- Bad input through main.run: one clear line (test_main.py runs main.py itself) -----------------------------------


def test_empty_folder_and_non_images(tmp_path):
    (tmp_path / "faces").mkdir()
    config = tiny_config(tmp_path, dataset="faces", data_dir=str(tmp_path), c_dim=3, train=True)
    with pytest.raises(UserError, match="no images matching"):
        main.run(config)
    (tmp_path / "faces" / "notes.jpg").write_text("not a picture")
    with pytest.raises(UserError, match="no images matching"):
        main.run(config)


def test_batch_larger_than_data(tmp_path, celeba_like_dir):
    config = tiny_config(tmp_path, dataset="celebA", data_dir=str(celeba_like_dir), input_height=54, batch_size=32,
                         train=True)
    with pytest.raises(UserError, match="24 examples is fewer than one batch .--batch_size=32"):
        main.run(config)


def test_crop_larger_than_images(tmp_path, celeba_like_dir):
    config = tiny_config(tmp_path, dataset="celebA", data_dir=str(celeba_like_dir), train=True)  # default crop 108
    with pytest.raises(UserError, match="108x108 is larger than the images .* is 109x89"):
        main.run(config)


def test_folder_whose_images_all_fail_to_decode_gets_one_line(tmp_path):
    from PIL import Image

    folder = tmp_path / "broken"
    folder.mkdir()
    for i in range(8):
        path = folder / f"{i}.bmp"
        Image.new("RGB", (1, 1), "red").save(path)
        with open(path, "ab") as f:
            f.write(b"\x00")  # Pillow still reads it; TensorFlow's BMP decoder refuses the size mismatch
    config = tiny_config(tmp_path, dataset="broken", data_dir=str(tmp_path), input_fname_pattern="*.bmp",
                         train=True)
    with pytest.raises(UserError, match="no image could be decoded"):
        main.run(config)
