"""Fetches the training data and the FID Inception graph into the layouts `datasets/formats.py` reads.

This is the only module of the project that touches the network, and only when
the user runs it:

    python download.py mnist fashion cifar10 celebA inception [--data_dir data] [--mirror URL]...

Every file is downloaded into `<name>.part`, resumed with an HTTP Range request
when a previous run was interrupted, checked against its known size and
checksum, and only then renamed into place, so a file with the final name is
always complete.  Archives are unpacked into a temporary directory inside the
data directory, refusing any member that could land outside it (absolute paths,
`..`, links), and renamed into place once they contain the expected files.

What is verified, and why it differs per dataset:

* MNIST and Fashion-MNIST (gzipped IDX files): the sha256 of the uncompressed
  content, not of the .gz bytes, so that one rule holds for every copy of the
  same data: re-compressed copies such as this repository's embedded MNIST
  (same IDX bytes, other gzip bytes) verify, and a copy with other pixels does
  not.  The values are those of the original files (MNIST from LeCun's site,
  Fashion-MNIST from Zalando's repository); the .gz size served by the hosts
  below is checked while downloading, where it detects a short transfer.
* CIFAR-10: size and the md5 published by the dataset authors (md5 is all they
  publish; it catches corruption, not a deliberate forgery).
* CelebA (img_align_celeba.zip): size and the md5 that torchvision uses.  Its
  official host is Google Drive, which has no stable direct-download URL (large
  files need a confirmation page whose format changes), so there is no default
  URL: pass `--mirror BASE_URL` of a server holding `img_align_celeba.zip`, or
  download it in a browser into the data directory and rerun, which then only
  verifies and unpacks it.
* Inception (inception-2015-12-05.tgz): no checksum for it is published, so only
  its size (88931400 bytes, as reported by TensorFlow's own downloaders) is
  checked, plus the gzip CRC while unpacking.  That catches truncation, not
  substitution; the https URL is tried before the plain-http one for that reason.

Already-installed data is detected (verified files, or the expected files of an
unpacked archive) and skipped, so rerunning the command is cheap.
"""

import argparse
import gzip
import http.client
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass

from runtime.errors import UserError
from utils import file_digest

USER_AGENT = "dcgan-download/1.0 (+python-urllib)"
# Seconds without any progress on a socket before a URL is given up on; long
# enough for slow academic servers, short enough that a dead mirror is skipped.
TIMEOUT_SECONDS = 60
_CHUNK_BYTES = 1 << 20
# "gunzip+sha256": the sha256 of a gzip file's uncompressed content (see the module docstring).
_CHECKSUM_KINDS = ("md5", "sha256", "gunzip+sha256")


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: where from, and what it must look like when it arrives."""

    name: str  # file name on disk, also appended to each --mirror base URL
    urls: tuple  # original hosts, tried after the mirrors, in order
    checksum: tuple | None  # (one of _CHECKSUM_KINDS, hex digest); None: size is all we know
    size: int | None  # bytes served by the hosts


@dataclass(frozen=True)
class Dataset:
    """A dataset's files and how they become the layout that datasets/formats.py expects."""

    description: str  # one line for --help
    directory: str  # where the usable data ends up, relative to the data dir
    files: tuple
    # None: the downloaded files are the data and go into `directory` as they are.
    # Otherwise each file is an archive, downloaded into the data dir itself, and
    # this member directory of it ("" for the whole archive) becomes `directory`.
    extract_subdir: str | None = None
    # Paths inside `directory` whose presence means an unpacked archive is installed.
    required: tuple = ()
    # Shown when a file has no URL at all and is not present yet.
    manual_hint: str = ""


_MNIST_HOSTS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/")
# The S3 website endpoint has no https; the sha256 checks make up for it.
_FASHION_HOST = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_INCEPTION_PATH = "download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz"


def _files(hosts, entries):
    """RemoteFiles for files that every host in `hosts` serves under the same name."""
    return tuple(RemoteFile(name, tuple(host + name for host in hosts), checksum, size)
                 for name, checksum, size in entries)


CATALOG = {
    "mnist": Dataset(
        description="MNIST handwritten digits, 4 IDX files (11 MB)",
        directory="mnist",
        files=_files(_MNIST_HOSTS, (
            ("train-images-idx3-ubyte.gz",
             ("gunzip+sha256", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"), 9912422),
            ("train-labels-idx1-ubyte.gz",
             ("gunzip+sha256", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"), 28881),
            ("t10k-images-idx3-ubyte.gz",
             ("gunzip+sha256", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"), 1648877),
            ("t10k-labels-idx1-ubyte.gz",
             ("gunzip+sha256", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"), 4542),
        )),
    ),
    "fashion": Dataset(
        description="Fashion-MNIST clothing images, 4 IDX files (30 MB)",
        directory="fashion",
        files=_files((_FASHION_HOST,), (
            ("train-images-idx3-ubyte.gz",
             ("gunzip+sha256", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"), 26421880),
            ("train-labels-idx1-ubyte.gz",
             ("gunzip+sha256", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"), 29515),
            ("t10k-images-idx3-ubyte.gz",
             ("gunzip+sha256", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"), 4422102),
            ("t10k-labels-idx1-ubyte.gz",
             ("gunzip+sha256", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"), 5148),
        )),
    ),
    "cifar10": Dataset(
        description="CIFAR-10 binary version (170 MB archive)",
        directory="cifar10",
        files=(RemoteFile("cifar-10-binary.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
                          ("md5", "c32a1d4ab5d03f1284b67883e8d87530"), 170052171),),
        extract_subdir="",
        required=tuple(f"cifar-10-batches-bin/{name}.bin"
                       for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                                    "data_batch_5", "test_batch")),
    ),
    "celebA": Dataset(
        description="aligned CelebA faces (1.4 GB archive; needs --mirror or a manually downloaded zip)",
        directory="celebA",
        files=(RemoteFile("img_align_celeba.zip", (),
                          ("md5", "00d2c5bc6d35e252742224ab0c1e8fcb"), 1443490838),),
        extract_subdir="img_align_celeba",
        required=("000001.jpg", "202599.jpg"),
        manual_hint=(
            "CelebA is hosted on Google Drive, which has no direct-download URL: get img_align_celeba.zip "
            "from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Align&Cropped Images) into the data "
            "directory, or pass --mirror BASE_URL of a server that has it, then run this again"
        ),
    ),
    "inception": Dataset(
        description="Inception graph for FID, as used by TTUR (89 MB archive)",
        directory="inception",
        files=(RemoteFile("inception-2015-12-05.tgz",
                          ("https://" + _INCEPTION_PATH, "http://" + _INCEPTION_PATH), None, 88931400),),
        extract_subdir="",
        required=("classify_image_graph_def.pb",),
    ),
}


class _TransferError(Exception):
    """A server answered, but not with the bytes we asked for; the next URL may do better."""


def _human(num_bytes):
    """Decimal units, as servers and file managers report download sizes."""
    for unit in ("B", "KB", "MB", "GB"):
        if num_bytes < 1000 or unit == "GB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1000


class _ProgressBar:
    """A single stderr line rewritten with \\r, so a long download shows it is alive."""

    def __init__(self, name, total, already):
        self._name, self._total, self._already = name, total, already
        self._start = self._last_draw = time.monotonic()

    def update(self, done, final=False):
        now = time.monotonic()
        if not final and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        speed = (done - self._already) / max(now - self._start, 1e-6)
        line = f"  {self._name}: {_human(done)}"
        if self._total:
            line += f" / {_human(self._total)} {100 * done / self._total:5.1f}%"
        line += f"  {_human(speed)}/s"
        sys.stderr.write("\r" + line.ljust(72) + ("\n" if final else ""))
        sys.stderr.flush()


def verify_file(path, checksum, size):
    """Raises UserError unless `path` has the expected size and checksum.

    The size is compared first because it is free and explains the common
    failure (a truncated download or an HTML error page) better than a hash.
    A checksum of the uncompressed content makes the file's own size
    irrelevant (another compressor gives another size); the download checked
    the size it transferred.
    """
    kind, expected = checksum if checksum is not None else (None, None)
    if kind is not None and kind not in _CHECKSUM_KINDS:
        raise ValueError(f"unsupported checksum {kind!r}; use one of {_CHECKSUM_KINDS}")
    gunzip = kind is not None and kind.startswith("gunzip+")
    actual_size = os.path.getsize(path)
    if size is not None and not gunzip and actual_size != size:
        raise UserError(f"{path}: is {actual_size} bytes, expected {size}")
    if kind is None:
        return
    try:
        actual = file_digest(path, kind.removeprefix("gunzip+"), gunzip=gunzip)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise UserError(f"{path}: not a complete gzip file ({e})") from None
    if actual != expected.lower():
        content = " of the uncompressed content" if gunzip else ""
        raise UserError(f"{path}: {kind.removeprefix('gunzip+')}{content} is {actual}, expected {expected}")


def _resume_start(content_range):
    """First byte of a 206 answer; resuming anywhere else would splice the file wrongly."""
    match = re.match(r"bytes (\d+)-", content_range or "")
    if not match:
        raise _TransferError(f"answered a resume request with an unusable Content-Range {content_range!r}")
    return int(match.group(1))


def _fetch_into_part(url, part, size, progress, timeout):
    """Makes one request for `url`, appending to `part` when the server honours Range.

    A server that ignores Range answers 200 with the whole file; appending that
    would corrupt the result, so the part file is restarted from zero instead.
    """
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    if size is not None and offset >= size:
        if offset == size:
            return  # finished last time, interrupted before the rename; verification decides
        os.remove(part)  # longer than the real file: not a prefix of it
        offset = 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    name = os.path.basename(part).removesuffix(".part")
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
        if offset and response.status == 206:
            start = _resume_start(response.headers.get("Content-Range"))
            if start != offset:
                raise _TransferError(f"resumed at byte {start} instead of {offset}")
            print(f"{name}: resuming at {_human(offset)} from {url}", flush=True)
        else:
            if offset:
                print(f"{name}: {url} cannot resume, starting over", flush=True)
            offset = 0
            print(f"{name}: downloading {url}", flush=True)
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else size
        if size is not None and total != size:
            raise _TransferError(f"offers {total} bytes but the file has {size}; it serves a different file")
        bar = _ProgressBar(name, total, offset) if progress else None
        done = offset
        with open(part, "ab" if offset else "wb") as out:
            while chunk := response.read(_CHUNK_BYTES):
                out.write(chunk)
                done += len(chunk)
                if bar:
                    bar.update(done)
        if bar:
            bar.update(done, final=True)
    if total is not None and done < total:
        raise _TransferError(f"closed the connection after {done} of {total} bytes")


def download_file(urls, dest, checksum=None, size=None, progress=None, timeout=TIMEOUT_SECONDS):
    """Downloads `dest` from the first of `urls` that works; returns False if it was already there.

    Bytes go to `dest + ".part"` and are renamed to `dest` only after the size
    and checksum match, so an interrupted or corrupt download never looks like
    a finished one, and the next run resumes the .part file where it stopped.
    `progress` None means: show a progress bar when stderr is a terminal.
    """
    if os.path.exists(dest):
        try:
            verify_file(dest, checksum, size)
        except UserError as e:
            raise UserError(f"{e}; not the expected file, delete it and run download.py again") from None
        print(f"{os.path.basename(dest)}: already present in {os.path.dirname(dest) or '.'}", flush=True)
        return False
    if not urls:
        raise UserError(f"{dest}: no URL to download it from; pass --mirror BASE_URL or put the file there")
    if progress is None:
        progress = sys.stderr.isatty()
    part = dest + ".part"
    failures = []
    for attempt, url in enumerate(urls, start=1):
        try:
            _fetch_into_part(url, part, size, progress, timeout)
            break
        except (OSError, http.client.HTTPException, _TransferError) as e:
            # URLError, HTTPError and socket timeouts are OSErrors; IncompleteRead is an HTTPException.
            failures.append(f"{url}: {e}")
            if attempt < len(urls):
                print(f"{os.path.basename(dest)}: {url} failed ({e}); trying the next URL", flush=True)
    else:
        kept = ""
        if os.path.exists(part):
            kept = f"; {os.path.getsize(part)} bytes kept in {part}, run again to resume"
        raise UserError(f"{dest}: download failed ({'; '.join(failures)}){kept}")
    try:
        verify_file(part, checksum, size)
    except UserError as e:
        os.remove(part)
        raise UserError(f"{e} (from {url}); deleted it, run again or try another --mirror") from None
    os.replace(part, dest)
    return True


def _member_path(root, name, archive):
    """Maps an archive member name to a path under `root`, refusing any that could escape it."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", parts[0]) or ".." in parts:
        raise UserError(f"{archive}: refusing member {name!r} (absolute path or '..'); the archive is unsafe")
    real_root = os.path.realpath(root)
    path = os.path.realpath(os.path.join(real_root, *[p for p in parts if p not in ("", ".")]))
    if os.path.commonpath([path, real_root]) != real_root:
        raise UserError(f"{archive}: refusing member {name!r}, it resolves outside {root}")
    return path


def _checked_zip_members(archive, zf, dest):
    """(destination path, is directory, member) for every member; UserError at the first unsafe one."""
    checked = []
    for info in zf.infolist():
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UserError(f"{archive}: refusing symlink member {info.filename!r}; the archive is unsafe")
        checked.append((_member_path(dest, info.filename, archive), info.is_dir(), info))
    return checked


def _checked_tar_members(archive, tf, dest):
    """(destination path, is directory, member) for every member; UserError at the first unsafe one."""
    checked = []
    for info in tf.getmembers():
        if info.issym() or info.islnk():
            raise UserError(f"{archive}: refusing link member {info.name!r}; the archive is unsafe")
        if not (info.isreg() or info.isdir()):
            raise UserError(f"{archive}: refusing special-file member {info.name!r}; the archive is unsafe")
        checked.append((_member_path(dest, info.name, archive), info.isdir(), info))
    return checked


def _write_members(checked, read_member):
    """Copies already-checked members as plain files and directories, whatever the archive claimed."""
    for path, is_dir, member in checked:
        if is_dir:
            os.makedirs(path, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with read_member(member) as src, open(path, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK_BYTES)


def safe_extract(archive, dest):
    """Unpacks a zip or tar(.gz) archive into the existing directory `dest`.

    Every member is checked before anything is written, so a hostile archive
    leaves nothing behind; files are written by us (not extractall), so no
    link, device, owner or permission bit from the archive is ever applied.
    """
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _write_members(_checked_zip_members(archive, zf, dest), zf.open)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                _write_members(_checked_tar_members(archive, tf, dest), tf.extractfile)
        else:
            raise UserError(f"{archive}: not a zip or tar archive; delete it and run download.py again")
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile, tarfile.TarError) as e:
        raise UserError(f"{archive}: cannot unpack ({e}); delete it and run download.py again") from None


def install_archive(archive, target, subdir, required):
    """Unpacks `archive` next to `target` and renames its `subdir` to `target`.

    Unpacking into a temporary directory on the same filesystem and renaming
    at the end means `target` either does not exist or is complete, which is
    what lets the next run trust its presence.
    """
    if os.path.isdir(target) and not os.listdir(target):
        os.rmdir(target)
    elif os.path.lexists(target):
        raise UserError(f"{target}: exists but is incomplete; move it away or delete it, then run again")
    workdir = tempfile.mkdtemp(prefix=".unpacking-", dir=os.path.dirname(os.path.abspath(target)))
    try:
        unpacked = os.path.join(workdir, "root")  # not the mkdtemp dir itself: that one is mode 0700
        os.mkdir(unpacked)
        safe_extract(archive, unpacked)
        source = os.path.join(unpacked, subdir) if subdir else unpacked
        missing = [p for p in required if not os.path.isfile(os.path.join(source, p))]
        if missing:
            raise UserError(f"{archive}: has no {os.path.join(subdir, missing[0])}; it is not the expected "
                            "archive, delete it and run download.py again")
        os.rename(source, target)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def mirror_urls(mirrors, name):
    """URLs of `name` on each --mirror base, which are tried before the original hosts."""
    return [mirror.rstrip("/") + "/" + name for mirror in mirrors]


def fetch_dataset(name, data_dir, mirrors=(), catalog=None, progress=None):
    """Downloads, verifies and (if needed) unpacks one dataset into `data_dir`."""
    catalog = CATALOG if catalog is None else catalog
    dataset = catalog[name]
    target = os.path.join(data_dir, dataset.directory)
    is_archive = dataset.extract_subdir is not None
    if is_archive and all(os.path.isfile(os.path.join(target, p)) for p in dataset.required):
        print(f"{name}: already present in {target}", flush=True)
        return
    os.makedirs(data_dir if is_archive else target, exist_ok=True)
    for remote in dataset.files:
        dest = os.path.join(data_dir if is_archive else target, remote.name)
        urls = mirror_urls(mirrors, remote.name) + list(remote.urls)
        if not urls and not os.path.exists(dest):
            raise UserError(f"{name}: {dest} is missing. {dataset.manual_hint}")
        download_file(urls, dest, remote.checksum, remote.size, progress=progress)
        if is_archive:
            print(f"{name}: unpacking {dest}", flush=True)
            install_archive(dest, target, dataset.extract_subdir, dataset.required)
            print(f"{name}: unpacked; {dest} is no longer needed and can be deleted", flush=True)
    print(f"{name}: ready in {target}", flush=True)


def _resolve_names(names, catalog):
    """Maps the names typed by the user to catalog keys, case-insensitively, failing before any download."""
    by_lower = {key.lower(): key for key in catalog}
    resolved = []
    for name in names:
        if name.lower() not in by_lower:
            raise UserError(f"unknown dataset {name!r}; choose from {', '.join(catalog)}")
        resolved.append(by_lower[name.lower()])
    return resolved


def _parser():
    listing = "\n".join(f"  {key:<10} {d.description} -> DATA_DIR/{d.directory}/"
                        for key, d in CATALOG.items())
    parser = argparse.ArgumentParser(
        prog="download.py",
        description="Download and verify datasets into the layouts the trainer reads.",
        epilog="datasets:\n" + listing,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("datasets", nargs="+", metavar="DATASET",
                        help="one or more of: " + ", ".join(CATALOG))
    parser.add_argument("--data_dir", default="data", help="root data directory (default: data)")
    parser.add_argument("--mirror", action="append", default=[], metavar="URL",
                        help="base URL tried before the original hosts, file name appended; repeatable")
    return parser


def main(argv=None):
    """Command-line entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        for name in _resolve_names(args.datasets, CATALOG):
            fetch_dataset(name, args.data_dir, args.mirror)
    except UserError as e:
        print(f"download.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ndownload.py: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
