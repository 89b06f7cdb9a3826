"""``mlfo inspect`` end to end on a dozen tiny videos: the page, its numbers, its refusals,
and the features it takes being ``mlfo extract``'s own."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from mlfo.cli import main
from mlfo.errors import MLFOError
from mlfo.eval.extract import compute_features
from mlfo.eval.views import ViewConfig
from mlfo.inspect import collection as col
from mlfo.inspect.api import InspectConfig, inspect_encoder

sys.path.insert(0, str(Path(__file__).parents[1] / "eval"))
from eval_fixtures import ShardSpy, ucf_fixture  # noqa: E402

VIEWS = ["--clip-len", "4", "--clips", "3", "--resize", "36", "--crop-size", "32"]
TINY_VIEWS = ViewConfig(clip_len=4, num_clips=3, resize=36, crop_size=32)


@pytest.fixture(scope="module")
def page(tiny_videos, tiny_encoder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("page") / "inspect"
    code = main(["inspect", str(tiny_encoder), str(tiny_videos / "folder"), "--out", str(out), *VIEWS,
                 "--queries", "3", "--k", "4", "--workers", "0", "--quiet",
                 "--query", str(tiny_videos / "outside.mp4"), "--query", str(tiny_videos / "folder" / "dup_of_first.mp4")])
    assert code == 0
    return out


def test_the_page_has_galleries_map_duplicates_and_health_for_both_encoders(page):
    summary = json.loads((page / "inspect.json").read_text())
    assert [e["key"] for e in summary["encoders"]] == ["main", "random"]
    names = [v["name"] for v in summary["videos"]]
    n = summary["n_videos"]
    assert n == 13 and len(names) == 14  # the collection, then the outside query
    for enc in summary["encoders"]:
        assert set(enc["health"]) == {"low", "mid", "high"}
        for h in enc["health"].values():
            assert 1 <= h["rankme"] <= min(h["n"], h["dim"]) and h["n"] == n
            assert 0 <= h["alignment"] <= 4 and h["uniformity"] <= 0
        assert sorted(enc["map"]["rows"]) == list(range(n))
        assert all(0 <= c <= 1 for xy in enc["map"]["xy"] for c in xy)
        queries = [names[g["video"]] for g in enc["galleries"]]
        assert queries[:2] == ["outside.mp4", "dup_of_first.mp4"] and len(queries) == 5
        for g in enc["galleries"]:
            assert len(g["neighbours"]) == 4 and g["video"] not in [r for r, _ in g["neighbours"]]
            sims = [s for _, s in g["neighbours"]]
            assert sims == sorted(sims, reverse=True)
        outside, dup = enc["galleries"][0], enc["galleries"][1]
        # the outside file is a copy of the 2nd video: its nearest neighbour, at similarity 1
        assert names[outside["neighbours"][0][0]] == names[1] and outside["neighbours"][0][1] == pytest.approx(1)
        assert names[dup["neighbours"][0][0]] == names[0] and dup["neighbours"][0][1] == pytest.approx(1)
        groups = [sorted(names[r] for r in g["rows"]) for g in enc["duplicates"]]
        assert any({names[0], "dup_of_first.mp4"} <= set(g) for g in groups)
    html = (page / "index.html").read_text()
    assert "<script src" not in html and "http" not in html.replace("http-equiv", "")  # offline, no CDN
    thumbs = {v["thumb"] for v in summary["videos"] if v["thumb"]}
    assert len(thumbs) == 14 and all((page / t).is_file() and f'src="{t}"' in html or t in html for t in thumbs)
    assert (page / "assets" / "spectrum.png").is_file()


def test_a_video_feature_is_the_one_mlfo_extract_computes(tiny_videos, tiny_encoder, tmp_path):
    from mlfo.data.splits import EvalData
    from mlfo.distributed import DistContext
    from mlfo.eval.encoders import resolve_encoder

    coll = col.load_collection(str(tiny_videos / "folder"), EvalData(), progress=False)
    module = resolve_encoder(str(tiny_encoder)).module
    feats, skipped = col.extract({"m": module}, coll, TINY_VIEWS, tmp_path / "shards", DistContext(),
                                 shard_videos=5, progress=False)
    plain = compute_features({"m": module}, TINY_VIEWS.dataset(coll.records), views_per_video=3, progress=False)
    assert not skipped and list(feats["m"].videos) == plain.kept
    np.testing.assert_allclose(feats["m"].levels["high"], plain.features["m"]["high"], rtol=1e-5, atol=1e-6)
    even, odd = feats["m"].halves["high"]
    assert not np.allclose(even, odd)  # two different view sets: something to align


def test_inspect_refuses_what_it_cannot_do(tiny_videos, tiny_encoder, tmp_path):
    data = str(tiny_videos / "folder")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(MLFOError, match="holds other files"):
        inspect_encoder(str(tiny_encoder), data, tmp_path / "mine", TINY_VIEWS, progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(MLFOError, match="at least 2 uniform clips"):
        inspect_encoder(str(tiny_encoder), data, tmp_path / "a", ViewConfig(num_clips=1), progress=False)
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(MLFOError, match="--query .*bad.mp4"):
        inspect_encoder(str(tiny_encoder), data, tmp_path / "b", TINY_VIEWS, queries=[tmp_path / "bad.mp4"],
                        progress=False)
    with pytest.raises(MLFOError, match="--k"):
        InspectConfig(k=0)
    assert main(["inspect", "random", data, "--out", str(tmp_path / "mine"), *VIEWS, "--quiet"]) == 2


def test_an_out_that_cannot_be_a_page_folder_is_one_line(tiny_videos, tmp_path, monkeypatch, capsys):
    data = str(tiny_videos / "folder")
    (tmp_path / "file").write_text("mine")
    assert main(["inspect", "random", data, "--out", str(tmp_path / "file"), *VIEWS, "--quiet"]) == 2
    assert capsys.readouterr().err == f"mlfo: error: {tmp_path / 'file'}: the page folder (--out) exists and is not a folder\n"
    out, real_mkdir = tmp_path / "ro" / "page", Path.mkdir

    def read_only_mkdir(self, *args, **kwargs):  # as a read-only mount answers (root ignores chmod)
        if self == out or out in self.parents:
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only_mkdir)
    assert main(["inspect", "random", data, "--out", str(out), *VIEWS, "--quiet"]) == 2
    assert capsys.readouterr().err == f"mlfo: error: {out}: cannot create the page folder (--out) (Permission denied)\n"
    assert (tmp_path / "file").read_text() == "mine"


def test_an_earlier_page_is_replaced(page, tiny_videos, tmp_path):
    import shutil

    earlier = shutil.copytree(page, tmp_path / "earlier")
    inspect_encoder("random", str(tiny_videos / "folder"), earlier, TINY_VIEWS, cfg=InspectConfig(queries=1, k=2),
                    arch="r3d_small", progress=False)
    summary = json.loads((earlier / "inspect.json").read_text())
    assert [e["key"] for e in summary["encoders"]] == ["main"] and summary["encoders"][0]["k"] == 2


def test_the_page_loads_in_chromium_with_every_image(page, tmp_path):
    from browser import check_page, chromium

    if chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium); the browser check needs it")
    found = check_page(page / "index.html", tmp_path / "page.png")
    assert found["errors"] == [] and found["bad_images"] == []
    assert found["images_checked"] >= 15  # 14 thumbnails and the spectrum figure
    assert (tmp_path / "page.png").stat().st_size > 10_000


def test_the_browser_check_catches_a_missing_image_and_a_script_error(tmp_path):
    from browser import check_page, chromium

    if chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium); the browser check needs it")
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><img src="assets/none.webp"><svg><circle data-thumb="assets/gone.webp"></circle></svg>'
                   "<script>console.error('boom'); undefinedFunction();</script></body></html>")
    found = check_page(bad, tmp_path / "bad.png")
    assert sorted(Path(u).name for u in found["bad_images"]) == ["gone.webp", "none.webp"]
    assert any("boom" in e for e in found["errors"]) and any("undefinedFunction" in e for e in found["errors"])


def test_a_video_in_several_parts_is_one_video_of_the_collection(tmp_path):
    from mlfo.data.splits import EvalData

    root, splits = ucf_fixture(tmp_path)  # 6 videos; splits 1-3 reuse them as train and test
    coll = col.load_collection(str(root), EvalData(fmt="ucf101", split_dir=str(splits), split="all"), progress=False)
    assert coll.n_collection == 6 and len({r.path for r in coll.records}) == 6


def _numbers(page: Path) -> dict:
    summary = json.loads((page / "inspect.json").read_text())
    return {e["key"]: {"health": {lv: {k: h[k] for k in ("rankme", "alignment", "uniformity", "n")}
                                  for lv, h in e["health"].items()},
                       "galleries": [(g["video"], [r for r, _ in g["neighbours"]]) for g in e["galleries"]],
                       "sims": [s for g in e["galleries"] for _, s in g["neighbours"]],
                       "duplicates": [sorted(d["rows"]) for d in e["duplicates"]]}
            for e in summary["encoders"]}


def _same_numbers(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key]["galleries"] == b[key]["galleries"] and a[key]["duplicates"] == b[key]["duplicates"]
        np.testing.assert_allclose(a[key]["sims"], b[key]["sims"], atol=1e-5)
        for lv, h in a[key]["health"].items():
            for k, v in h.items():
                assert b[key]["health"][lv][k] == pytest.approx(v, rel=1e-4, abs=1e-5), (key, lv, k)


def test_two_torchrun_processes_write_the_page_of_one(page, tiny_videos, tiny_encoder, tmp_path):
    """Each process extracts its shards; rank 0 alone writes the page, with the numbers of
    a single process (the page fixture: same encoder, data, views and queries)."""
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "-m", "mlfo.cli",
           "inspect", str(tiny_encoder), str(tiny_videos / "folder"), "--out", str(out), *VIEWS, "--queries", "3",
           "--k", "4", "--workers", "0", "--quiet", "--shard-videos", "3", "--query", str(tiny_videos / "outside.mp4"),
           "--query", str(tiny_videos / "folder" / "dup_of_first.mp4")]
    env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("inspect page") == 1  # rank 0 alone writes and reports
    assert "2 processes" in json.loads((out / "inspect.json").read_text())["facts"][1]
    assert sorted(p.name for p in out.iterdir()) == ["assets", "index.html", "inspect.json"]  # shards removed
    _same_numbers(_numbers(page), _numbers(out))
    assert _numbers(page)["main"]["health"]["high"]["rankme"] != _numbers(page)["random"]["health"]["high"]["rankme"]


def test_an_interrupted_inspect_resumes_from_its_finished_shards(page, tiny_videos, tiny_encoder, tmp_path,
                                                                  monkeypatch):
    out, argv = tmp_path / "page", [str(tiny_encoder), str(tiny_videos / "folder"), tmp_path / "page", TINY_VIEWS]
    options = dict(cfg=InspectConfig(queries=3, k=4), progress=False, shard_videos=4,
                   queries=[tiny_videos / "outside.mp4", tiny_videos / "folder" / "dup_of_first.mp4"])
    spy = ShardSpy(monkeypatch)
    spy.interrupt()  # Ctrl-C right after the first shard is on disk
    with pytest.raises(KeyboardInterrupt):
        inspect_encoder(*argv, **options)
    assert not (out / "inspect.json").exists() and len(list(out.glob(".mlfo-shards/*/shard-*.npz"))) == 1
    spy.record()
    inspect_encoder(*argv, **options)
    assert spy.computed == list(range(8, 28))  # 14 videos x 2 halves; the first shard (4 videos) was done
    _same_numbers(_numbers(page), _numbers(out))
    with pytest.raises(MLFOError, match="holds other files"):  # a folder of the user's with a look-alike name
        (tmp_path / "mine" / ".mlfo-shards").mkdir(parents=True)
        (tmp_path / "mine" / "notes.txt").write_text("keep me")
        inspect_encoder(str(tiny_encoder), str(tiny_videos / "folder"), tmp_path / "mine", TINY_VIEWS, progress=False)
