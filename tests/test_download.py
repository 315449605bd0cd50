"""download.py against a real HTTP server on 127.0.0.1 serving fixture files made here.

No test reaches the internet: every URL points at the in-process server, whose
handler can honour or ignore Range requests and can drop the connection after
a given number of bytes, so resuming and fallback are tested end to end.
"""

import gzip
import hashlib
import io
import os
import re
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import EMBEDDED_MNIST, SHARED_DATA
from hypothesis import given
from hypothesis import strategies as st

import download
from runtime.errors import UserError

PAYLOAD = bytes(range(256)) * 40  # 10240 bytes, every byte value, so misplaced offsets show


def sha256(data):
    return ("sha256", hashlib.sha256(data).hexdigest())


class _Handler(BaseHTTPRequestHandler):
    """Serves `server.files`, recording each request and misbehaving as `server` says."""

    def do_GET(self):
        with self.server.idle:
            self.server.started += 1
        try:
            self._serve()
        finally:
            with self.server.idle:
                self.server.finished += 1
                self.server.idle.notify_all()

    def _serve(self):
        srv = self.server
        range_header = self.headers.get("Range")
        srv.requests.append((self.path, range_header))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if range_header and not srv.ignore_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if srv.drop_after is not None:
            payload = payload[:srv.drop_after]  # then the connection closes: an interrupted transfer
        self.wfile.write(payload)
        self.wfile.flush()
        srv.hold_record.wait()  # set, except when a test holds the handler between answering and recording
        srv.bytes_sent.append(len(payload))

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.requests, srv.bytes_sent = {}, [], []
    srv.idle, srv.started, srv.finished = threading.Condition(), 0, 0
    srv.hold_record = threading.Event()
    srv.hold_record.set()
    srv.ignore_range, srv.drop_after = False, None
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


def _served(server):
    """The server once every request it received has been answered and recorded.

    The client can read a whole response before the handler thread has
    appended to `bytes_sent`, so a test must wait for the handler, not read
    the record as soon as download.py returns.
    """
    with server.idle:
        assert server.idle.wait_for(lambda: server.finished == server.started, timeout=60)
    return server


def _paths(server):
    """The paths the server was asked for, in order."""
    return [path for path, _ in _served(server).requests]


def _tar_gz(members):
    """A .tar.gz from (TarInfo, bytes or None) pairs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _zip(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def _all_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)


# --- download_file --------------------------------------------------------------------------------------


def test_download_verifies_and_lands_by_atomic_rename(server, tmp_path, monkeypatch):
    server.files["/f.bin"] = PAYLOAD
    dest = str(tmp_path / "f.bin")
    renames = []
    real_replace = os.replace

    def spy_replace(src, dst):
        renames.append((src, dst, os.path.exists(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(download.os, "replace", spy_replace)
    url = server.url + "/f.bin"
    assert download.download_file([url], dest, sha256(PAYLOAD), len(PAYLOAD), progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    assert os.listdir(tmp_path) == ["f.bin"]  # no .part left behind
    assert renames == [(dest + ".part", dest, False)]  # the final name appears only through the rename


def test_md5_checksums_are_verified_too(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    md5 = ("md5", hashlib.md5(PAYLOAD).hexdigest())
    download.download_file([server.url + "/f.bin"], str(tmp_path / "f.bin"), md5, None, progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    with pytest.raises(UserError, match="md5"):
        download.verify_file(str(tmp_path / "f.bin"), ("md5", "0" * 32), None)


def test_interrupted_download_keeps_part_and_resumes_with_range(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    server.drop_after = 3000
    dest = str(tmp_path / "f.bin")
    args = ([server.url + "/f.bin"], dest, sha256(PAYLOAD), len(PAYLOAD))

    with pytest.raises(UserError, match="run again to resume"):
        download.download_file(*args, progress=False)
    assert not os.path.exists(dest)
    assert (tmp_path / "f.bin.part").read_bytes() == PAYLOAD[:3000]

    server.drop_after = None
    assert download.download_file(*args, progress=False)
    assert _served(server).requests[-1] == ("/f.bin", "bytes=3000-")
    assert server.bytes_sent[-1] == len(PAYLOAD) - 3000  # only the missing tail was transferred
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    assert not (tmp_path / "f.bin.part").exists()


def test_request_record_is_read_only_after_the_handler_wrote_it(server, tmp_path):
    """The race behind a once-flaky test: download_file can return before the
    server thread records what it sent.  Held here on purpose; _served waits."""
    server.files["/f.bin"] = PAYLOAD
    server.hold_record.clear()
    download.download_file([server.url + "/f.bin"], str(tmp_path / "f.bin"), sha256(PAYLOAD), len(PAYLOAD),
                           progress=False)
    assert server.bytes_sent == []  # the whole file arrived, the record is not written yet
    server.hold_record.set()
    assert _served(server).bytes_sent == [len(PAYLOAD)]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    server.ignore_range = True
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:3000])
    dest = str(tmp_path / "f.bin")
    download.download_file([server.url + "/f.bin"], dest, sha256(PAYLOAD), len(PAYLOAD), progress=False)
    assert _served(server).requests == [("/f.bin", "bytes=3000-")]
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD  # not the old 3000 bytes plus the whole file


def test_wrong_checksum_is_rejected_and_download_removed(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    dest = str(tmp_path / "f.bin")
    wrong = "ab" * 32
    with pytest.raises(UserError) as excinfo:
        download.download_file([server.url + "/f.bin"], dest, ("sha256", wrong), len(PAYLOAD), progress=False)
    message = str(excinfo.value)
    assert "f.bin" in message and wrong in message and hashlib.sha256(PAYLOAD).hexdigest() in message
    assert os.listdir(tmp_path) == []


def test_server_offering_wrong_size_is_skipped_for_next_url(server, tmp_path):
    server.files["/short.bin"] = PAYLOAD[:100]  # e.g. an HTML error page served with status 200
    server.files["/f.bin"] = PAYLOAD
    urls = [server.url + "/short.bin", server.url + "/f.bin"]
    download.download_file(urls, str(tmp_path / "f.bin"), sha256(PAYLOAD), len(PAYLOAD), progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    assert _paths(server) == ["/short.bin", "/f.bin"]


def test_already_present_verified_file_is_skipped_without_request(server, tmp_path, capsys):
    (tmp_path / "f.bin").write_bytes(PAYLOAD)
    downloaded = download.download_file([server.url + "/f.bin"], str(tmp_path / "f.bin"), sha256(PAYLOAD),
                                        len(PAYLOAD), progress=False)
    assert downloaded is False
    assert server.requests == []
    assert "already present" in capsys.readouterr().out


def test_present_file_with_wrong_checksum_is_reported_not_overwritten(server, tmp_path):
    (tmp_path / "f.bin").write_bytes(b"x" * len(PAYLOAD))
    server.files["/f.bin"] = PAYLOAD
    with pytest.raises(UserError, match="delete it"):
        download.download_file([server.url + "/f.bin"], str(tmp_path / "f.bin"), sha256(PAYLOAD),
                               len(PAYLOAD), progress=False)
    assert (tmp_path / "f.bin").read_bytes() == b"x" * len(PAYLOAD)
    assert server.requests == []


def test_progress_bar_reports_percentage_on_stderr(server, tmp_path, capsys):
    server.files["/f.bin"] = PAYLOAD
    dest = str(tmp_path / "f.bin")
    download.download_file([server.url + "/f.bin"], dest, None, len(PAYLOAD), progress=True)
    err = capsys.readouterr().err
    assert "\r" in err and "100.0%" in err and "/s" in err


# --- safe extraction ------------------------------------------------------------------------------------


def test_zip_with_parent_traversal_is_refused_and_writes_nothing(tmp_path):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(_zip([("good.txt", b"fine"), ("../evil", b"pwned")]))
    dest = tmp_path / "data" / "target"
    dest.mkdir(parents=True)
    with pytest.raises(UserError, match=r"\.\./evil"):
        download.safe_extract(str(archive), str(dest))
    assert _all_files(tmp_path) == ["evil.zip"]  # not even the harmless member before the bad one


def _symlink():
    info = tarfile.TarInfo("link")
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return info


def _hardlink():
    info = tarfile.TarInfo("hard")
    info.type, info.linkname = tarfile.LNKTYPE, "good.txt"
    return info


@pytest.mark.parametrize("bad_member, expected", [
    ((_symlink(), None), "link member 'link'"),
    ((_hardlink(), None), "link member 'hard'"),
    ((tarfile.TarInfo("/tmp/abs.txt"), b"x"), "member '/tmp/abs.txt'"),
    ((tarfile.TarInfo("a/../../up.txt"), b"x"), "member 'a/../../up.txt'"),
    ((tarfile.TarInfo("a/../inside.txt"), b"x"), "member 'a/../inside.txt'"),  # '..' is refused outright
])
def test_tar_with_link_or_escaping_path_is_refused(tmp_path, bad_member, expected):
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(_tar_gz([(tarfile.TarInfo("good.txt"), b"fine"), bad_member]))
    dest = tmp_path / "target"
    dest.mkdir()
    with pytest.raises(UserError, match="refusing " + re.escape(expected)):
        download.safe_extract(str(archive), str(dest))
    assert _all_files(tmp_path) == ["bad.tar.gz"]


def test_member_resolving_through_a_symlink_outside_is_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "sub").symlink_to(tmp_path)
    with pytest.raises(UserError, match="resolves outside"):
        download._member_path(str(root), "sub/x.txt", "a.zip")


@given(st.lists(st.sampled_from(["a", "b", ".", "..", "", "/", "\\", "c:", "x.jpg"]), max_size=6))
def test_accepted_member_names_never_resolve_outside_root(tmp_path_factory, pieces):
    root = str(tmp_path_factory.getbasetemp() / "root")
    name = "/".join(pieces)
    try:
        path = download._member_path(root, name, "a.zip")
    except UserError:
        return
    real_root = os.path.realpath(root)
    assert os.path.commonpath([path, real_root]) == real_root


# --- fetch_dataset and the CLI ----------------------------------------------------------------------------


def _flat_catalog(server, path_prefix="/orig/"):
    """A dataset of plain files, like mnist, served from `path_prefix` on the test server."""
    files = {"a.gz": gzip.compress(b"first"), "b.gz": gzip.compress(b"second")}
    for name, data in files.items():
        server.files[path_prefix + name] = data
    remote = tuple(download.RemoteFile(name, (server.url + path_prefix + name,), sha256(data), len(data))
                   for name, data in files.items())
    return {"digits": download.Dataset("test digits", "digits", remote)}, files


def test_mirror_is_tried_first_and_falls_back_when_it_404s(server, tmp_path):
    catalog, files = _flat_catalog(server)
    mirrors = [server.url + "/mirror/"]
    download.fetch_dataset("digits", str(tmp_path), mirrors, catalog=catalog, progress=False)
    assert _paths(server) == ["/mirror/a.gz", "/orig/a.gz", "/mirror/b.gz", "/orig/b.gz"]
    assert {name: (tmp_path / "digits" / name).read_bytes() for name in files} == files


def test_working_mirror_spares_the_original_host(server, tmp_path):
    catalog, files = _flat_catalog(server)
    for name, data in files.items():
        server.files["/mirror/" + name] = data
    download.fetch_dataset("digits", str(tmp_path), [server.url + "/mirror"], catalog=catalog, progress=False)
    assert _paths(server) == ["/mirror/a.gz", "/mirror/b.gz"]


def _archive_catalog(server, archive_name, archive_bytes, subdir, required, urls=None):
    server.files["/" + archive_name] = archive_bytes
    remote = download.RemoteFile(archive_name, (server.url + "/" + archive_name,) if urls is None else urls,
                                 sha256(archive_bytes), len(archive_bytes))
    dataset = download.Dataset("test", "faces", (remote,), extract_subdir=subdir, required=required,
                               manual_hint="get it by hand")
    return {"faces": dataset}


def test_zip_dataset_is_flattened_into_place_and_then_skipped(server, tmp_path, capsys):
    archive = _zip([("img_align_celeba/000001.jpg", b"one"), ("img_align_celeba/000002.jpg", b"two"),
                    ("README.txt", b"outside the subdir, not installed")])
    catalog = _archive_catalog(server, "faces.zip", archive, "img_align_celeba", ("000001.jpg",))
    data_dir = tmp_path / "data"
    download.fetch_dataset("faces", str(data_dir), catalog=catalog, progress=False)
    assert _all_files(data_dir / "faces") == ["000001.jpg", "000002.jpg"]
    assert (data_dir / "faces" / "000002.jpg").read_bytes() == b"two"
    assert sorted(os.listdir(data_dir)) == ["faces", "faces.zip"]  # no temporary directory left behind

    server.requests.clear()
    download.fetch_dataset("faces", str(data_dir), catalog=catalog, progress=False)
    assert server.requests == []
    assert "faces: already present" in capsys.readouterr().out


def test_tar_dataset_keeps_its_inner_directory(server, tmp_path):
    archive = _tar_gz([(tarfile.TarInfo("batches/data_batch_1.bin"), b"\x01" * 3073),
                       (tarfile.TarInfo("batches/test_batch.bin"), b"\x02" * 3073)])
    catalog = _archive_catalog(server, "batches.tar.gz", archive, "", ("batches/test_batch.bin",))
    download.fetch_dataset("faces", str(tmp_path), catalog=catalog, progress=False)
    assert _all_files(tmp_path / "faces") == ["batches/data_batch_1.bin", "batches/test_batch.bin"]
    assert oct(os.stat(tmp_path / "faces").st_mode & 0o777) != oct(0o700)  # not the private temp dir mode


def test_archive_without_required_files_is_refused(server, tmp_path):
    catalog = _archive_catalog(server, "faces.zip", _zip([("other/1.jpg", b"x")]), "img", ("1.jpg",))
    with pytest.raises(UserError, match="has no img/1.jpg"):
        download.fetch_dataset("faces", str(tmp_path), catalog=catalog, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["faces.zip"]


def test_dataset_without_url_needs_mirror_or_manual_file(server, tmp_path):
    archive = _zip([("img/1.jpg", b"x")])
    catalog = _archive_catalog(server, "faces.zip", archive, "img", ("1.jpg",), urls=())
    with pytest.raises(UserError, match="get it by hand"):
        download.fetch_dataset("faces", str(tmp_path), catalog=catalog, progress=False)

    (tmp_path / "faces.zip").write_bytes(archive)  # the user downloaded it in a browser
    download.fetch_dataset("faces", str(tmp_path), catalog=catalog, progress=False)
    assert (tmp_path / "faces" / "1.jpg").read_bytes() == b"x"
    assert server.requests == []


def test_cli_unknown_dataset_exits_2_with_one_line(tmp_path, capsys):
    data_dir = tmp_path / "data"
    assert download.main(["mnist", "nosuch", "--data_dir", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("download.py: error: unknown dataset 'nosuch'")
    assert err.count("\n") == 1
    assert not data_dir.exists()  # names are checked before anything is downloaded


def test_cli_help_lists_every_dataset(capsys):
    with pytest.raises(SystemExit) as excinfo:
        download.main(["--help"])
    assert excinfo.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("mnist", "fashion", "cifar10", "celebA", "inception"))


def test_catalog_checksums_are_well_formed():
    digest_lengths = {"md5": 32, "sha256": 64, "gunzip+sha256": 64}
    for dataset in download.CATALOG.values():
        for remote in dataset.files:
            assert remote.size, remote.name
            if remote.checksum is not None:
                algorithm, hexdigest = remote.checksum
                assert len(hexdigest) == digest_lengths[algorithm], remote.name
                int(hexdigest, 16)


# --- one checksum rule for gzipped IDX files: the uncompressed content ------------------------------------


def test_content_checksum_accepts_any_compression_of_the_same_bytes(tmp_path):
    checksum = ("gunzip+sha256", hashlib.sha256(PAYLOAD).hexdigest())
    fast, best = tmp_path / "fast.gz", tmp_path / "best.gz"
    fast.write_bytes(gzip.compress(PAYLOAD, compresslevel=1))
    best.write_bytes(gzip.compress(PAYLOAD, compresslevel=9, mtime=0))
    assert fast.read_bytes() != best.read_bytes()
    for path in (fast, best):
        download.verify_file(str(path), checksum, size=12345)  # a download size does not apply to a local copy
    other = tmp_path / "other.gz"
    other.write_bytes(gzip.compress(PAYLOAD[::-1]))
    with pytest.raises(UserError, match="sha256 of the uncompressed content is"):
        download.verify_file(str(other), checksum, None)
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(best.read_bytes()[:-20])
    with pytest.raises(UserError, match="not a complete gzip file"):
        download.verify_file(str(truncated), checksum, None)
    plain = tmp_path / "plain.gz"
    plain.write_bytes(PAYLOAD)
    with pytest.raises(UserError, match="not a complete gzip file"):
        download.verify_file(str(plain), checksum, None)


@pytest.mark.parametrize("name, source", [("mnist", EMBEDDED_MNIST), ("fashion", SHARED_DATA / "fashion-mnist")])
def test_known_good_copies_pass_the_catalog_checksums_without_a_download(tmp_path, capsys, name, source):
    """The embedded MNIST .gz files differ in bytes from LeCun's (one was rebuilt
    from PNGs) but not in content: download.py must accept them as installed."""
    if not source.is_dir():
        pytest.skip(f"{source} not available")
    target = tmp_path / download.CATALOG[name].directory
    target.mkdir()
    for remote in download.CATALOG[name].files:
        (target / remote.name).write_bytes((source / remote.name).read_bytes())
    download.fetch_dataset(name, str(tmp_path), progress=False)  # raises before any request on a mismatch
    out = capsys.readouterr().out
    assert out.count("already present") == 4 and "downloading" not in out
