"""Write tiny copies of the benchmark datasets in their NATIVE download formats (for the loader tests).

Each writer takes a folder, writes the label file(s) exactly as the real download lays them out plus a
small image per listed file, and returns the labels it wrote so tests can compare.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from refine_iqa.io_utils import save_image


def tiny_image(path: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    save_image(path, rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8))


def _write_csv(path: Path, header: list[str], rows: list[list], quote_all: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, quoting=csv.QUOTE_NONNUMERIC if quote_all else csv.QUOTE_MINIMAL)
        w.writerow(header)
        w.writerows(rows)


def write_koniq(root: Path, mos: list[float] | None = None, *, sets: list[str] | None = None,
                folder: str = "1024x768", images: bool = True) -> dict[str, float]:
    """koniq10k_scores_and_distributions.csv (quoted header as released) [+ koniq10k_distributions_sets.csv]."""
    mos = mos if mos is not None else [1.5, 2.0, 3.0, 3.5, 4.2, 2.7, 3.3, 1.9, 4.0, 2.2]
    names = [f"{1000000 + i}.jpg" for i in range(len(mos))]
    header = ["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "MOS_zscore"]
    rows = [[n, 1, 2, 3, 2, 1, 9, m, 0.5, (m - 1) * 25] for n, m in zip(names, mos)]
    _write_csv(root / "koniq10k_scores_and_distributions.csv", header, rows, quote_all=True)
    if sets is not None:
        _write_csv(root / "koniq10k_distributions_sets.csv", header + ["set"],
                   [r + [s] for r, s in zip(rows, sets)], quote_all=True)
    if images:
        for i, n in enumerate(names):
            tiny_image(root / folder / n, i)
    return dict(zip(names, mos))


def write_xlsx(path: Path, sheets: dict[str, list[list]]) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for title, rows in sheets.items():
        ws = wb.create_sheet(title)
        for row in rows:
            ws.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)


def write_spaq(root: Path, mos: list[float] | None = None, *, images: bool = True) -> dict[str, float]:
    """Annotations/MOS and Image attribute scores.xlsx, images in TestImage/."""
    mos = mos if mos is not None else [float(x) for x in np.linspace(5, 95, 20)]
    names = [f"{i + 1:05d}.jpg" for i in range(len(mos))]
    rows = [["Image name", "MOS", "Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness"]]
    rows += [[n, m, 50, 50, 50, 50, 50] for n, m in zip(names, mos)]
    write_xlsx(root / "Annotations" / "MOS and Image attribute scores.xlsx", {"Sheet1": rows})
    if images:
        for i, n in enumerate(names):
            tiny_image(root / "TestImage" / n, i)
    return dict(zip(names, mos))


def write_livec(root: Path, mos: list[float] | None = None, *, images: bool = True,
                first_names: list[str] | None = None) -> dict[str, float]:
    """Data/AllImages_release.mat (cell array, N x 1) and Data/AllMOS_release.mat (1 x N double), as released.

    The first seven entries are the training images t1..t7 (kept in Images/trainingImages/ in the release).
    """
    import scipy.io

    mos = mos if mos is not None else [10.0, 25.5, 40.0, 55.0, 70.0, 85.0]
    train = first_names if first_names is not None else [f"t{i}.bmp" for i in range(1, 8)]
    names = train + [f"{i + 3}.JPG" if i % 2 else f"{i + 3}.bmp" for i in range(len(mos))]
    all_mos = [50.0] * len(train) + list(mos)
    cells = np.empty((len(names), 1), dtype=object)
    for i, n in enumerate(names):
        cells[i, 0] = np.array([n])
    (root / "Data").mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(root / "Data" / "AllImages_release.mat", {"AllImages_release": cells})
    scipy.io.savemat(root / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.array([all_mos])})
    scipy.io.savemat(root / "Data" / "AllStdDev_release.mat", {"AllStdDev_release": np.ones((1, len(names)))})
    if images:
        for i, n in enumerate(names[len(train):]):
            tiny_image(root / "Images" / n, i)
        for i, n in enumerate(train):
            tiny_image(root / "Images" / "trainingImages" / n, i)
    return dict(zip(names[len(train):], mos))


def write_kadid(root: Path, n_refs: int = 10, n_types: int = 2, n_levels: int = 2, *,
                images: bool = True) -> dict[str, tuple[str, float]]:
    """dmos.csv (dist_img,ref_img,dmos,var) and images/ with Ixx.png references and Ixx_tt_ll.png copies."""
    rows, out = [], {}
    for r in range(1, n_refs + 1):
        ref = f"I{r:02d}.png"
        if images:
            tiny_image(root / "images" / ref, r)
        for t in range(1, n_types + 1):
            for lvl in range(1, n_levels + 1):
                name = f"I{r:02d}_{t:02d}_{lvl:02d}.png"
                dmos = round(5.0 - lvl * 0.8 - t * 0.1, 3)
                rows.append([name, ref, dmos, 0.1])
                out[name] = (ref, dmos)
                if images:
                    tiny_image(root / "images" / name, r * 100 + t * 10 + lvl)
    _write_csv(root / "dmos.csv", ["dist_img", "ref_img", "dmos", "var"], rows)
    return out


CSIQ_TYPES = [("noise", "awgn", "AWGN"), ("jpeg", "jpeg", "JPEG"), ("jpeg 2000", "jpeg2000", "jpeg2000"),
              ("fnoise", "fnoise", "fnoise"), ("blur", "blur", "BLUR"), ("contrast", "contrast", "contrast")]


def write_csiq(root: Path, refs: tuple = (1600, "aerial_city"), levels: int = 2, *, images: bool = True,
               title_row: bool = True) -> dict[str, float]:
    """csiq.DMOS.xlsx with sheet all_by_image whose table starts in column B (as in the release), plus
    dst_imgs/<type>/<ref>.<TYPE>.<lvl>.png. A numeric reference name (1600) is stored as a number."""
    header = [None, "image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"]
    rows = ([["CSIQ DMOS scores"], []] if title_row else []) + [header]
    out = {}
    for ref in refs:
        for idx, (dst_type, folder, token) in enumerate(CSIQ_TYPES, 1):
            for lvl in range(1, levels + 1):
                dmos = round(0.1 * lvl + 0.02 * idx, 4)
                rows.append([None, ref, idx, dst_type, lvl, 0.05, dmos])
                fname = f"{ref}.{token}.{lvl}.png"
                out[f"{folder}/{fname}"] = dmos
                if images:
                    tiny_image(root / "dst_imgs" / folder / fname, lvl)
    write_xlsx(root / "csiq.DMOS.xlsx", {"note": [["readme"]], "all_by_image": rows})
    if images:
        for ref in refs:
            tiny_image(root / "src_imgs" / f"{ref}.png")
    return out


def write_agiqa(root: Path, mos: list[float] | None = None, *, folder: str = "AGIQA-3K",
                images: bool = True) -> dict[str, float]:
    """data.csv (name,prompt,adj1,adj2,style,mos_quality,std_quality,mos_align,std_align) + images."""
    mos = mos if mos is not None else [round(0.2 + 0.23 * i, 3) for i in range(20)]
    names = [f"sd1.5_normal_{i:03d}.jpg" for i in range(len(mos))]
    header = ["name", "prompt", "adj1", "adj2", "style", "mos_quality", "std_quality", "mos_align", "std_align"]
    rows = [[n, "a cat, on a mat", "red", "", "baroque", m, 0.4, 3.0, 0.5] for n, m in zip(names, mos)]
    _write_csv(root / "data.csv", header, rows)
    if images:
        for i, n in enumerate(names):
            tiny_image(root / folder / n, i)
    return dict(zip(names, mos))


LLVISIONQA_ITEMS = [
    {"img_path": "00001.jpg", "question": "Is this image blurry?", "candidates": ["Yes", "No"],
     "correct_ans": "Yes", "type": 0, "concern": 0},
    {"img_path": "00002.jpg", "question": "What is the most severe distortion?",
     "candidates": ["noise", "blur", "overexposure"], "correct_ans": "noise", "type": 1, "concern": 0},
    {"img_path": "00003.jpg", "question": "How is the composition?",
     "candidates": ["good", "acceptable", "poor"], "correct_ans": "poor", "type": 2, "concern": 1},
    {"img_path": "00004.jpg", "question": "Is the dog in focus?", "candidates": ["Yes", "No"],
     "correct_ans": "No", "type": 0, "concern": 2},
    {"img_path": "00005.jpg", "question": "How is the colour of the sky?",
     "candidates": ["vivid", "dull", "oversaturated"], "correct_ans": "vivid", "type": 2, "concern": 3},
    {"img_path": "00006.jpg", "question": "What part is the clearest?",
     "candidates": ["the face", "the background", "the hands"], "correct_ans": "the face", "type": 1, "concern": 2},
]


def write_llvisionqa(root: Path, items: list[dict] | None = None, *, split: str = "test",
                     folder: str = "images", images: bool = True) -> list[dict]:
    items = items if items is not None else LLVISIONQA_ITEMS
    root.mkdir(parents=True, exist_ok=True)
    (root / f"llvisionqa_{split}.json").write_text(json.dumps(items, indent=1), encoding="utf-8")
    if images:
        for i, it in enumerate(items):
            tiny_image(root / folder / it["img_path"], i)
    return items


def write_pyiqa_meta(path: Path, header: list[str], rows: list[list]) -> None:
    _write_csv(path, header, rows)
