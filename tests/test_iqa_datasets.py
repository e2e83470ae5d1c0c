"""Benchmark loaders on tiny fixtures written in each dataset's native download format."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from fixtures_iqa import (
    write_agiqa,
    write_csiq,
    write_kadid,
    write_koniq,
    write_livec,
    write_pyiqa_meta,
    write_spaq,
    write_xlsx,
)

from refine_iqa.data import iqa_datasets as D

# --------------------------------------------------------------------------- scale_mos (hand-computed)

@pytest.mark.parametrize("mos, lo, hi, lower, want", [
    (3.0, 1, 5, False, 2.5),     # KonIQ: 5 * (3 - 1) / 4
    (5.0, 1, 5, False, 4.9),     # 5.0 clipped to 4.9
    (1.0, 1, 5, False, 0.0),
    (0.2, 0, 1, True, 4.0),      # CSIQ DMOS: 5 * (1 - 0.2) / 1
    (0.0, 0, 1, True, 4.9),      # best CSIQ image: 5.0 clipped
    (1.0, 0, 1, True, 0.0),
    (50.0, 0, 100, False, 2.5),  # SPAQ / LIVE-C
    (37.0, 0, 100, False, 1.9),  # 1.85 rounds half up
    (2.8, 1, 5, False, 2.3),     # 2.25 (stored as 2.2499999...) rounds half up
    (3.3, 0, 5, False, 3.3),     # AGIQA-3K is already on 0-5
    (0.5, 1, 5, False, 0.0),     # below range clips to 0
])
def test_scale_mos_hand_values(mos, lo, hi, lower, want):
    assert float(D.scale_mos(mos, lo, hi, lower)) == pytest.approx(want, abs=1e-12)


def test_scale_mos_vectorised_and_nan():
    out = D.scale_mos([1.0, 3.0, 5.0, np.nan], 1, 5)
    assert out.shape == (4,)
    np.testing.assert_allclose(out[:3], [0.0, 2.5, 4.9])
    assert np.isnan(out[3])
    with pytest.raises(ValueError, match="hi > lo"):
        D.scale_mos(1.0, 5, 5)


def test_dataset_table():
    assert set(D.DATASETS) == {"koniq10k", "spaq", "livec", "kadid10k", "csiq", "agiqa3k"}
    assert D.DATASETS["csiq"].lower_better and (D.DATASETS["csiq"].lo, D.DATASETS["csiq"].hi) == (0.0, 1.0)
    assert not D.DATASETS["kadid10k"].lower_better  # HIGHER is better despite the name "dmos"
    assert (D.DATASETS["koniq10k"].lo, D.DATASETS["koniq10k"].hi) == (1.0, 5.0)
    assert (D.DATASETS["agiqa3k"].lo, D.DATASETS["agiqa3k"].hi) == (0.0, 5.0)


# --------------------------------------------------------------------------- splits

def test_split_random_is_seeded_and_order_free():
    names = [f"n{i}" for i in range(50)]
    a = D.split_random(names, 0)
    assert a == D.split_random(names, 0)
    assert a.count("train") == 40 and a.count("test") == 10
    assert a != D.split_random(names, 1)
    # Same assignment whatever order the label file lists the names in.
    rev = D.split_random(names[::-1], 0)
    assert dict(zip(names, a)) == dict(zip(names[::-1], rev))


def test_split_by_group_keeps_groups_whole():
    groups = [f"I{i // 5:02d}" for i in range(81 * 5)]
    s = D.split_by_group(groups, 3)
    side = {}
    for g, v in zip(groups, s):
        side.setdefault(g, set()).add(v)
    assert all(len(v) == 1 for v in side.values())
    assert sum(v == {"train"} for v in side.values()) == 65  # round(0.8 * 81)
    with pytest.raises(ValueError, match="train_fraction"):
        D.split_by_group(groups, 0, 1.0)


# --------------------------------------------------------------------------- each dataset, happy path

def _basic_checks(df, name, truth):
    assert list(df.columns) == list(D.COLUMNS)
    assert (df["dataset"] == name).all()
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in df["image_path"])
    got = dict(zip(df["name"], df["mos"]))
    assert got == pytest.approx(truth)
    spec = D.DATASETS[name]
    np.testing.assert_allclose(df["mos_scaled"], D.scale_mos(df["mos"], spec.lo, spec.hi, spec.lower_better))
    assert ((df["mos_scaled"] >= 0) & (df["mos_scaled"] < 5)).all()
    assert set(df["split"]) <= {"train", "val", "test"}


def test_koniq_official_split(tmp_path):
    sets = ["training"] * 6 + ["validation"] * 2 + ["test"] * 2
    truth = write_koniq(tmp_path, sets=sets)
    df = D.load("koniq10k", tmp_path)
    _basic_checks(df, "koniq10k", truth)
    assert df["split"].tolist() == ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    assert df.loc[df["name"] == "1000002.jpg", "mos_scaled"].item() == 2.5  # MOS 3.0
    assert (df["label"] == df["mos"]).all()


def test_koniq_without_sets_file_uses_seeded_split_and_512_folder(tmp_path):
    truth = write_koniq(tmp_path, folder="512x384")
    df = D.load("KonIQ-10k", tmp_path, split_seed=7)
    _basic_checks(df, "koniq10k", truth)
    assert "512x384" in df["image_path"][0]
    assert df["split"].tolist().count("train") == 8
    assert df["split"].tolist() == D.load("koniq10k", tmp_path, split_seed=7)["split"].tolist()


def test_koniq_bad_set_value_and_missing_set_row(tmp_path):
    write_koniq(tmp_path, sets=["training"] * 9 + ["holdout"])
    with pytest.raises(ValueError, match=r"koniq10k_distributions_sets\.csv: line 11, column 'set'.*holdout"):
        D.load("koniq10k", tmp_path)


def test_koniq_sets_file_missing_an_image(tmp_path):
    write_koniq(tmp_path, sets=["training"] * 10)
    sets = tmp_path / "koniq10k_distributions_sets.csv"
    sets.write_text("\n".join(sets.read_text().splitlines()[:-2]) + "\n")  # drop the last two rows
    with pytest.raises(ValueError, match=r"2 image\(s\) of koniq10k_scores_and_distributions\.csv have no `set` entry"):
        D.load("koniq10k", tmp_path)


def test_koniq_sets_file_alone_is_enough(tmp_path):
    write_koniq(tmp_path, sets=["training"] * 5 + ["test"] * 5)
    (tmp_path / "koniq10k_scores_and_distributions.csv").unlink()
    df = D.load("koniq10k", tmp_path)
    assert df["split"].tolist() == ["train"] * 5 + ["test"] * 5


def test_spaq_xlsx_and_seeded_split(tmp_path):
    truth = write_spaq(tmp_path)
    a = D.load("spaq", tmp_path, split_seed=0)
    _basic_checks(a, "spaq", truth)
    assert a["split"].tolist().count("train") == 16
    b = D.load("spaq", tmp_path, split_seed=0)
    c = D.load("spaq", tmp_path, split_seed=1)
    assert a["split"].tolist() == b["split"].tolist()
    assert a["split"].tolist() != c["split"].tolist()


def test_spaq_lowercase_annotations_folder(tmp_path):
    write_spaq(tmp_path)
    (tmp_path / "Annotations").rename(tmp_path / "annotations")
    assert len(D.load("spaq", tmp_path)) == 20


def test_livec_mat_drops_training_images(tmp_path):
    truth = write_livec(tmp_path)
    df = D.load("livec", tmp_path)
    _basic_checks(df, "livec", truth)
    assert len(df) == 6 and not any(n.startswith("t") for n in df["name"])
    assert (df["split"] == "test").all()
    assert df["mos_scaled"].tolist() == [0.5, 1.3, 2.0, 2.8, 3.5, 4.3]  # 5*m/100: 1.275 -> 1.3, 2.75 -> 2.8


def test_livec_requires_release_layout(tmp_path):
    write_livec(tmp_path, first_names=[f"x{i}.bmp" for i in range(7)])
    with pytest.raises(ValueError, match=r"AllImages_release\.mat: entries 1-7 should be the training images t1\.\.t7"):
        D.load("livec", tmp_path)


def test_livec_length_mismatch(tmp_path):
    import scipy.io

    write_livec(tmp_path)
    scipy.io.savemat(tmp_path / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.ones((1, 5))})
    with pytest.raises(ValueError, match="has 5 values but AllImages_release.mat lists 13"):
        D.load("livec", tmp_path)


def test_livec_wrong_variable(tmp_path):
    import scipy.io

    write_livec(tmp_path)
    scipy.io.savemat(tmp_path / "Data" / "AllMOS_release.mat", {"mos": np.ones((1, 13))})
    with pytest.raises(ValueError, match=r"no variable 'AllMOS_release' \(variables found: \['mos'\]\)"):
        D.load("livec", tmp_path)


def test_livec_out_of_range_names_entry(tmp_path):
    write_livec(tmp_path, mos=[10.0, 120.0, 30.0])
    with pytest.raises(ValueError, match=r"AllMOS_release\.mat: entry 9, column 'AllMOS_release': value 120\.0 is outside"):
        D.load("livec", tmp_path)


def test_kadid_split_by_reference(tmp_path):
    truth = write_kadid(tmp_path, n_refs=10)
    df = D.load("kadid10k", tmp_path, split_seed=5)
    _basic_checks(df, "kadid10k", {k: v[1] for k, v in truth.items()})
    sides = df.groupby("ref_name")["split"].agg(set)
    assert all(len(s) == 1 for s in sides)  # no reference image on both sides
    assert sum(s == {"train"} for s in sides) == 8
    assert (df["label"] == df["mos"]).all()  # higher is better
    row = df[df["name"] == "I03_02_01.png"].iloc[0]
    assert (row["ref_name"], row["dist_type"], row["dist_level"]) == ("I03.png", 2, 1)
    again = D.load("kadid10k", tmp_path, split_seed=5)
    assert again["split"].tolist() == df["split"].tolist()


def test_csiq_xlsx_offset_table_and_direction(tmp_path):
    truth = write_csiq(tmp_path)
    df = D.load("csiq", tmp_path)
    _basic_checks(df, "csiq", truth)
    assert len(df) == 2 * 6 * 2 and (df["split"] == "test").all()
    np.testing.assert_allclose(df["label"], -df["mos"])  # lower is better -> sign flipped
    row = df[df["name"] == "awgn/1600.AWGN.1.png"].iloc[0]  # numeric ref stored as number in Excel
    assert row["ref_name"] == "1600" and row["dist_level"] == 1
    assert row["mos"] == pytest.approx(0.12) and row["mos_scaled"] == 4.4  # 5 * (1 - 0.12)
    assert "jpeg2000/aerial_city.jpeg2000.2.png" in set(df["name"])


def test_csiq_header_in_first_row_and_case_insensitive_files(tmp_path):
    write_csiq(tmp_path, title_row=False)
    p = tmp_path / "dst_imgs" / "awgn" / "1600.AWGN.1.png"
    p.rename(p.with_name("1600.awgn.1.png"))
    df = D.load("csiq", tmp_path)
    assert any(x.endswith("1600.awgn.1.png") for x in df["image_path"])


def test_csiq_missing_sheet_and_unknown_type(tmp_path):
    write_csiq(tmp_path, images=False)
    write_xlsx(tmp_path / "csiq.DMOS.xlsx", {"Sheet1": [["image", "dst_type", "dst_lev", "dmos"]]})
    with pytest.raises(ValueError, match=r"no sheet named 'all_by_image'; sheets found: \['Sheet1'\]"):
        D.load("csiq", tmp_path, check_images=False)
    write_xlsx(tmp_path / "csiq.DMOS.xlsx", {"all_by_image": [
        ["image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"], ["1600", 1, "gamma", 1, 0.1, 0.2]]})
    with pytest.raises(ValueError, match=r"row 2, column 'dst_type': unknown distortion type 'gamma'"):
        D.load("csiq", tmp_path, check_images=False)


def test_agiqa_folder_detection_and_split(tmp_path):
    truth = write_agiqa(tmp_path, folder="images")
    df = D.load("agiqa3k", tmp_path)
    _basic_checks(df, "agiqa3k", truth)
    assert df["split"].tolist().count("train") == 16
    assert f"{os.sep}images{os.sep}" in df["image_path"][0]
    # AGIQA-3K is already on 0-5, so scaling only rounds: 0.2 -> 0.2, 0.43 -> 0.4, 0.66 -> 0.7, 4.57 -> 4.6
    assert df["mos_scaled"].tolist()[:3] == [0.2, 0.4, 0.7]
    assert df.loc[df["name"] == "sd1.5_normal_019.jpg", "mos_scaled"].item() == 4.6


# --------------------------------------------------------------------------- error cases

def test_unknown_dataset_and_missing_root(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'tid2013'"):
        D.load("tid2013", tmp_path)
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        D.load("spaq", tmp_path / "nope")


@pytest.mark.parametrize("name, expected", [
    ("koniq10k", "koniq10k_scores_and_distributions.csv"),
    ("spaq", "MOS and Image attribute scores.xlsx"),
    ("livec", "AllMOS_release.mat"),
    ("kadid10k", "dmos.csv"),
    ("csiq", "csiq.DMOS.xlsx"),
    ("agiqa3k", "data.csv"),
])
def test_missing_label_file_names_path_and_layout(tmp_path, name, expected):
    with pytest.raises(FileNotFoundError) as e:
        D.load(name, tmp_path)
    msg = str(e.value)
    assert "label file not found" in msg and expected in msg and "download layout" in msg


def test_missing_column(tmp_path):
    write_agiqa(tmp_path)
    text = (tmp_path / "data.csv").read_text().replace("mos_quality", "quality", 1)
    (tmp_path / "data.csv").write_text(text)
    with pytest.raises(ValueError, match=r"data\.csv: missing column\(s\) \['mos_quality'\]; found \['name'"):
        D.load("agiqa3k", tmp_path)


def test_missing_xlsx_column(tmp_path):
    write_spaq(tmp_path)
    write_xlsx(tmp_path / "Annotations" / "MOS and Image attribute scores.xlsx",
               {"Sheet1": [["Image name", "Score"], ["00001.jpg", 50]]})
    with pytest.raises(ValueError, match=r"no header row with column\(s\) \['Image name', 'MOS'\]"):
        D.load("spaq", tmp_path)


def test_nan_label_names_line_and_column(tmp_path):
    write_kadid(tmp_path, n_refs=2)
    lines = (tmp_path / "dmos.csv").read_text().splitlines()
    lines[3] = lines[3].split(",")[0] + "," + lines[3].split(",")[1] + ",,0.1"
    (tmp_path / "dmos.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"dmos\.csv: line 4, column 'dmos': label is empty or not a number"):
        D.load("kadid10k", tmp_path)


def test_blank_lines_keep_line_numbers(tmp_path):
    write_kadid(tmp_path, n_refs=2)
    lines = (tmp_path / "dmos.csv").read_text().splitlines()
    lines.insert(2, "")
    lines[5] = lines[5].replace(lines[5].split(",")[2], "abc")
    (tmp_path / "dmos.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 6, column 'dmos': label is empty or not a number \('abc'\)"):
        D.load("kadid10k", tmp_path)


def test_out_of_range_label_in_xlsx(tmp_path):
    write_spaq(tmp_path, mos=[50.0, 101.5, 20.0])
    with pytest.raises(ValueError, match=r"row 3, column 'MOS': value 101\.5 is outside the SPAQ label range \[0\.0, 100\.0\]"):
        D.load("spaq", tmp_path)


def test_koniq_out_of_range_hints_at_zscore_column(tmp_path):
    write_koniq(tmp_path, mos=[3.0, 55.0])
    with pytest.raises(ValueError, match=r"line 3, column 'MOS': value 55\.0 is outside the KonIQ-10k label range"):
        D.load("koniq10k", tmp_path)


def test_duplicate_image_rows(tmp_path):
    write_agiqa(tmp_path, mos=[1.0, 2.0, 3.0])
    text = (tmp_path / "data.csv").read_text()
    (tmp_path / "data.csv").write_text(text + text.splitlines()[1] + "\n")
    with pytest.raises(ValueError, match=r"line 5, column 'name': duplicate image name 'sd1.5_normal_000.jpg' \(first at line 2\)"):
        D.load("agiqa3k", tmp_path)


def test_missing_images_named_and_counted(tmp_path):
    write_spaq(tmp_path)
    for i in (3, 5, 7, 9, 11, 13, 15):
        (tmp_path / "TestImage" / f"{i:05d}.jpg").unlink()
    with pytest.raises(FileNotFoundError) as e:
        D.load("spaq", tmp_path)
    msg = str(e.value)
    assert "7 of 20 images listed in" in msg and "00003.jpg" in msg and "(and 2 more)" in msg
    assert "00013.jpg" not in msg
    # Without the check the frame still loads (paths point where the images should be).
    assert len(D.load("spaq", tmp_path, check_images=False)) == 20


def test_missing_image_folder(tmp_path):
    write_kadid(tmp_path, n_refs=2, images=False)
    with pytest.raises(FileNotFoundError, match=r"image folder not found .*images"):
        D.load("kadid10k", tmp_path)


def test_bad_csv_and_bad_xlsx(tmp_path):
    (tmp_path / "data.csv").write_text("")
    with pytest.raises(ValueError, match=r"data\.csv: file is empty"):
        D.load("agiqa3k", tmp_path)
    (tmp_path / "csiq.DMOS.xlsx").write_text("not a workbook")
    with pytest.raises(ValueError, match=r"csiq\.DMOS\.xlsx: cannot open as an Excel \.xlsx workbook"):
        D.load("csiq", tmp_path)


# --------------------------------------------------------------------------- pyiqa meta-info CSVs

def test_pyiqa_nr_meta_with_official_split(tmp_path):
    from fixtures_iqa import tiny_image

    rows = [["a.jpg", 80.0, 5.0, "train"], ["b.jpg", 20.0, 4.0, "val"], ["c.jpg", 50.0, 3.0, "test"]]
    write_pyiqa_meta(tmp_path / "meta.csv", ["img_name", "mos", "std", "official_split"], rows)
    for r in rows:
        tiny_image(tmp_path / "imgs" / r[0])
    df = D.load_pyiqa_meta(tmp_path / "meta.csv", tmp_path / "imgs", mos_range=(1, 100), lower_better=False,
                           dataset="koniq_pyiqa")
    assert df["split"].tolist() == ["train", "val", "test"]
    assert df["mos_scaled"].tolist() == [4.0, 1.0, 2.5]  # 5*(m-1)/99 = 3.99, 0.96, 2.47
    assert (df["dataset"] == "koniq_pyiqa").all() and df["ref_name"].isna().all()


def test_pyiqa_fr_meta_lower_better_and_no_split(tmp_path):
    rows = [["r1.png", "r1.blur.1.png", 0.1], ["r1.png", "r1.blur.2.png", 0.6]]
    write_pyiqa_meta(tmp_path / "meta.csv", ["ref_name", "dist_name", "dmos"], rows)
    df = D.load_pyiqa_meta(tmp_path / "meta.csv", tmp_path, mos_range=[0, 1], lower_better=True, check_images=False)
    assert df["name"].tolist() == ["r1.blur.1.png", "r1.blur.2.png"]
    assert df["ref_name"].tolist() == ["r1.png", "r1.png"]
    assert df["mos_scaled"].tolist() == [4.5, 2.0] and df["label"].tolist() == [-0.1, -0.6]
    assert (df["split"] == "test").all()


def test_pyiqa_errors(tmp_path):
    write_pyiqa_meta(tmp_path / "m.csv", ["img_name", "mos"], [["a.jpg", "x"]])
    with pytest.raises(ValueError, match="neither column 2"):
        D.load_pyiqa_meta(tmp_path / "m.csv", tmp_path, mos_range=(0, 1), lower_better=False, check_images=False)
    write_pyiqa_meta(tmp_path / "m.csv", ["img_name", "mos", "split"], [["a.jpg", 0.5, "dev"]])
    with pytest.raises(ValueError, match=r"line 2, column 'split': unknown split 'dev'"):
        D.load_pyiqa_meta(tmp_path / "m.csv", tmp_path, mos_range=(0, 1), lower_better=False, check_images=False)
    write_pyiqa_meta(tmp_path / "m.csv", ["img_name", "mos"], [["a.jpg", 0.5]])
    with pytest.raises(FileNotFoundError, match=re.escape("1 of 1 images listed in")):
        D.load_pyiqa_meta(tmp_path / "m.csv", tmp_path, mos_range=(0, 1), lower_better=False)
    with pytest.raises(FileNotFoundError, match="meta-info CSV not found"):
        D.load_pyiqa_meta(tmp_path / "x.csv", tmp_path, mos_range=(0, 1), lower_better=False)
    with pytest.raises(ValueError, match="hi > lo"):
        D.load_pyiqa_meta(tmp_path / "m.csv", tmp_path, mos_range=(1, 1), lower_better=False)
