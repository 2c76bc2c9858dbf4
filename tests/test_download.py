"""dismi.data.download against a local HTTP server on 127.0.0.1 with Range support, and against file:// URLs."""

import hashlib
import http.server
import re
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from dismi.data.download import download
from dismi.data.shapes3d import validate_file
from dismi.synthetic.compose import GRIDS
from dismi.util.errors import DismiError
from dismi.util.files import file_sha256

PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Server:
    """Serves PAYLOAD at /f; `cut_after` bytes into the first `cuts` answers it drops the connection."""

    def __init__(self, payload=PAYLOAD, cut_after=None, cuts=0, ignore_range=False, fail_with=()):
        self.payload, self.cut_after, self.cuts = payload, cut_after, cuts
        self.ignore_range, self.fail_with = ignore_range, list(fail_with)
        self.ranges = []  # the Range header of every request (None when absent)
        self.bytes_sent = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.handle(self)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/f"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def handle(self, h):
        self.ranges.append(h.headers.get("Range"))
        if self.fail_with:
            h.send_error(self.fail_with.pop(0))
            return
        match = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range") or "")
        start = int(match.group(1)) if match and not self.ignore_range else 0
        if start >= len(self.payload) and match:
            h.send_error(416)
            return
        body = self.payload[start:]
        h.send_response(206 if start else 200)
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if self.cuts and self.cut_after is not None:
            self.cuts -= 1
            body = body[: self.cut_after]
            h.close_connection = True
        h.wfile.write(body)
        self.bytes_sent += len(body)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def fetch(url, dest, **kw):
    kw = {"size": len(PAYLOAD), "sha256": SHA, "progress": False, "backoff": 0.01, **kw}
    return download(url, dest, **kw)


def test_complete_download(tmp_path):
    dest = tmp_path / "d" / "f.h5"
    with Server() as s:
        assert fetch(s.url, dest) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "d" / "f.h5.part").exists()
    assert s.ranges == [None]


def test_resumes_with_range_after_the_server_cuts_the_connection(tmp_path):
    dest = tmp_path / "f.h5"
    with Server(cut_after=100_000, cuts=2) as s:
        fetch(s.url, dest)
    assert dest.read_bytes() == PAYLOAD
    assert s.ranges == [None, "bytes=100000-", "bytes=200000-"]
    assert s.bytes_sent == len(PAYLOAD)


def test_resumes_a_part_file_left_by_an_earlier_run(tmp_path):
    dest = tmp_path / "f.h5"
    (tmp_path / "f.h5.part").write_bytes(PAYLOAD[:123_456])
    with Server() as s:
        fetch(s.url, dest)
    assert dest.read_bytes() == PAYLOAD
    assert s.ranges == ["bytes=123456-"]


def test_server_ignoring_range_restarts_from_zero(tmp_path):
    dest = tmp_path / "f.h5"
    (tmp_path / "f.h5.part").write_bytes(b"x" * 1000)
    with Server(ignore_range=True) as s:
        fetch(s.url, dest)
    assert dest.read_bytes() == PAYLOAD


def test_part_longer_than_the_servers_file_is_discarded(tmp_path):
    dest = tmp_path / "f.h5"
    (tmp_path / "f.h5.part").write_bytes(PAYLOAD[:1000])
    with Server(payload=PAYLOAD[:500]) as s, pytest.raises(DismiError, match="is 500 bytes, expected 300000"):
        fetch(s.url, dest)
    assert s.ranges == ["bytes=1000-", None]
    assert not dest.exists()


def test_transient_http_errors_are_retried(tmp_path):
    dest = tmp_path / "f.h5"
    with Server(fail_with=[503, 502]) as s:
        fetch(s.url, dest)
    assert dest.read_bytes() == PAYLOAD
    assert len(s.ranges) == 3


def test_not_found_fails_at_once(tmp_path):
    with Server(fail_with=[404]) as s, pytest.raises(DismiError, match="HTTP 404") as e:
        fetch(s.url, tmp_path / "f.h5")
    assert len(s.ranges) == 1 and s.url in str(e.value)


def test_checksum_mismatch_leaves_no_file(tmp_path):
    dest = tmp_path / "f.h5"
    with Server() as s, pytest.raises(DismiError, match=f"SHA-256 {SHA}, expected {'0' * 64}"):
        fetch(s.url, dest, sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def closed_port_url() -> str:
    with socket.socket() as sock:  # a port nobody listens on once the socket closes
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/3dshapes.h5"


def test_server_down_gives_one_line_with_the_ways_out(tmp_path):
    url = closed_port_url()
    with pytest.raises(DismiError) as e:
        fetch(url, tmp_path / "f.h5", retries=2, ways_out="use file:// or synthetic")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"cannot download {url} (") and msg.endswith("use file:// or synthetic")
    assert list(tmp_path.iterdir()) == []


def test_gives_up_after_retries_but_keeps_the_bytes_for_next_time(tmp_path):
    dest = tmp_path / "f.h5"
    # Each try brings no new byte after the first cut, so the count of failures in a row runs out.
    with Server(cut_after=0, cuts=10) as s, pytest.raises(DismiError, match="rerun to resume"):
        (tmp_path / "f.h5.part").write_bytes(PAYLOAD[:5000])
        fetch(s.url, dest, retries=2)
    assert len(s.ranges) == 3 and not dest.exists()
    assert (tmp_path / "f.h5.part").read_bytes() == PAYLOAD[:5000]


def test_file_url(tmp_path):
    src = tmp_path / "copy of 3dshapes.h5"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "f.h5"
    fetch(src.as_uri(), dest)
    assert dest.read_bytes() == PAYLOAD


def test_file_url_resumes_and_checks(tmp_path):
    src = tmp_path / "src.h5"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "f.h5"
    (tmp_path / "f.h5.part").write_bytes(PAYLOAD[:777])
    fetch(src.as_uri(), dest)
    assert file_sha256(dest) == SHA
    with pytest.raises(DismiError, match="cannot read"):
        fetch((tmp_path / "missing.h5").as_uri(), tmp_path / "g.h5")


def test_download_stage_renders_the_small_grid(tmp_path, monkeypatch, capsys, params_file, run_stage):
    out = tmp_path / "data" / "shapes3d.h5"
    code, text = run_stage(
        "download", "--out", out, "--params", params_file(tmp_path, dataset="synthetic", synthetic_grid="small")
    )
    assert code == 0, text
    np.testing.assert_array_equal(validate_file(out), GRIDS["small"])
    assert sorted(p.name for p in out.parent.iterdir()) == ["shapes3d.h5"]


def test_download_stage_offline_names_the_url_and_both_ways_out(tmp_path, monkeypatch, capsys, params_file, run_stage):
    url = closed_port_url()
    out = tmp_path / "shapes3d.h5"
    code, text = run_stage(
        "download", "--out", out, "--params", params_file(tmp_path, dataset="shapes3d", shapes3d_url=url)
    )
    assert code == 1 and text.count("\n") == 1
    assert text.startswith(f"error: cannot download {url} (")
    assert "-S shapes3d_url=file:///" in text and "-S dataset=synthetic" in text
    assert list(tmp_path.iterdir()) == [tmp_path / "params.yaml"]


# --------------------------------------------------------------------------- the per-user cache


@pytest.fixture
def official(tmp_path, monkeypatch, write_file):
    """A small file in the official layout served as if it were 3dshapes.h5; the stage checks its size and hash."""
    from stages import download as stage

    path = tmp_path / "served.h5"
    write_file(path)
    payload = path.read_bytes()
    monkeypatch.setattr(stage, "SHAPES3D_SIZE", len(payload))
    monkeypatch.setattr(stage, "SHAPES3D_SHA256", hashlib.sha256(payload).hexdigest())
    return payload


def test_download_stage_keeps_the_file_in_the_user_cache_and_a_rerun_makes_no_request(
    tmp_path, monkeypatch, capsys, official, params_file, run_stage
):
    cache = tmp_path / "cache"
    monkeypatch.setenv("DISMI_CACHE", str(cache))
    out = tmp_path / "data" / "shapes3d.h5"
    with Server(payload=official) as s:
        params = params_file(tmp_path, dataset="shapes3d", shapes3d_url=s.url)
        code, text = run_stage("download", "--out", out, "--params", params)
        assert code == 0, text
        assert s.ranges == [None] and out.read_bytes() == official
        assert (cache / "3dshapes.h5").read_bytes() == official and (cache / "3dshapes.h5.verified").exists()
        # A rerun (after a code edit, DVC deletes the output first) takes the cached file: no request,
        # and no hashing either while the file's size and mtime are what the sidecar recorded.
        out.unlink()
        hashed = []
        monkeypatch.setattr("dismi.data.download.file_sha256", lambda p: hashed.append(p) or file_sha256(p))
        code, text = run_stage("download", "--out", out, "--params", params)
        assert code == 0, text
        assert s.ranges == [None] and hashed == []
        assert out.read_bytes() == official and "from " + str(cache / "3dshapes.h5") in text
        if "linked" in text:  # a hard link where the file system allows: no second copy
            assert out.stat().st_ino == (cache / "3dshapes.h5").stat().st_ino
        # A cached file that changed behind the sidecar's back is hashed, found wrong and fetched again.
        cached = cache / "3dshapes.h5"
        cached.unlink()  # (unlinked first: `out` may be the same file)
        cached.write_bytes(official[:-1] + bytes([official[-1] ^ 1]))
        out.unlink()
        code, text = run_stage("download", "--out", out, "--params", params)
        assert code == 0, text
        assert s.ranges == [None, None] and out.read_bytes() == official and len(hashed) == 2


def test_an_interrupted_download_resumes_from_the_cache(
    tmp_path, monkeypatch, capsys, official, params_file, run_stage
):
    cache = tmp_path / "cache"
    monkeypatch.setenv("DISMI_CACHE", str(cache))
    cache.mkdir()
    (cache / "3dshapes.h5.part").write_bytes(official[:1000])
    out = tmp_path / "shapes3d.h5"
    with Server(payload=official) as s:
        code, text = run_stage(
            "download", "--out", out, "--params", params_file(tmp_path, dataset="shapes3d", shapes3d_url=s.url)
        )
    assert code == 0, text
    assert s.ranges == ["bytes=1000-"] and out.read_bytes() == official


def test_the_default_cache_is_per_user_outside_the_repository(monkeypatch, tmp_path):
    from dismi.data.download import cache_dir

    monkeypatch.delenv("DISMI_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "dismi"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "dismi"
    monkeypatch.setenv("DISMI_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
