"""`refine-iqa score` and the Scorer API on the embedded model, with good and corrupt files mixed."""

import json

import numpy as np
import pytest
from PIL import Image

from refine_iqa.cli import main
from refine_iqa.inference import Scorer, collect_images


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(d / f"good{i}.png")
    (d / "sub").mkdir()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(d / "sub" / "nested.jpg")
    (d / "corrupt.jpg").write_text("not an image")
    (d / "empty.png").write_bytes(b"")
    (d / "notes.txt").write_text("ignored: not an image suffix")
    return d


def test_collect_images_recurses_and_filters_by_suffix(image_dir):
    names = sorted(p.name for p in collect_images([image_dir]))
    assert names == ["corrupt.jpg", "empty.png", "good0.png", "good1.png", "good2.png", "nested.jpg"]


def test_cli_scores_good_files_and_reports_bad_ones(tiny_model_dir, image_dir, capsys):
    rc = main(["score", str(image_dir), "--model", str(tiny_model_dir)])
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert rc == 0 and len(lines) == 4
    for line in lines:
        path, score = line.split("\t")
        assert 0.0 <= float(score) < 5.0
    assert "corrupt.jpg: not_an_image" in err and "empty.png: empty" in err and "scored 4 of 6" in err


def test_cli_json_lines_with_think(tiny_model_dir, image_dir, capsys):
    rc = main(["score", str(image_dir / "good0.png"), "--model", str(tiny_model_dir), "--think", "--json",
               "--max-new-tokens", "24"])
    out, _ = capsys.readouterr()
    rec = json.loads(out.strip())
    assert rc == 0 and rec["path"].endswith("good0.png") and 0 <= rec["score"] < 5 and "interpretation" in rec


def test_cli_fails_only_when_nothing_scored(tiny_model_dir, image_dir, capsys):
    assert main(["score", str(image_dir / "corrupt.jpg"), "--model", str(tiny_model_dir)]) == 1
    assert main(["score", str(image_dir / "good1.png"), "--model", str(tiny_model_dir / "missing")]) == 2
    assert "not found" in capsys.readouterr().err


def test_scorer_api_is_deterministic_and_takes_arrays(tiny_model_dir, image_dir):
    scorer = Scorer(tiny_model_dir)
    arr = np.asarray(Image.open(image_dir / "good0.png"))
    a = scorer.score([image_dir / "good0.png", arr, image_dir / "corrupt.jpg"])
    b = scorer.score([image_dir / "good0.png"])
    assert a[0]["score"] == b[0]["score"] == a[1]["score"]
    assert a[2]["score"] is None and a[2]["error"] == "not_an_image"


def test_each_score_is_handed_out_as_soon_as_its_batch_is_done(tiny_model_dir, image_dir):
    """A folder of thousands must show its scores as they come, not all at the end."""
    events = []
    paths = sorted(collect_images([image_dir]))  # 6 files, 2 unreadable; batches of 2
    results = Scorer(tiny_model_dir, batch_size=2).score(
        paths, progress=lambda done, total: events.append(("batch", done)),
        on_result=lambda r: events.append(("result", r["path"])))
    assert events == [("result", str(paths[0])), ("result", str(paths[1])), ("batch", 2),
                      ("result", str(paths[2])), ("result", str(paths[3])), ("batch", 4),
                      ("result", str(paths[4])), ("result", str(paths[5])), ("batch", 6)]
    assert [r["path"] for r in results] == [str(p) for p in paths]
    assert [r["score"] is None for r in results] == [p.name in ("corrupt.jpg", "empty.png") for p in paths]
