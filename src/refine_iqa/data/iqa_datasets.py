"""Benchmark IQA datasets, read exactly as users download them (see docs/datasets.md).

`load(name, root)` returns one row per image: image_path (absolute), mos (raw label), mos_scaled
([0, 5), higher is better, REFERENCE section 2), label (raw label with its sign fixed so that higher is
better: what correlations are computed against), split, dataset, plus name / ref_name / dist_type /
dist_level where the dataset has them. Every label problem is reported with the file, the row (as the
user sees it: CSV line, Excel row, MATLAB entry) and the column.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

TRAIN_FRACTION = 0.8  # the field's usual 8:2 split where a dataset has no official one
SPLITS = ("train", "val", "test")
_MAX_NAMED_MISSING = 5


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset's download looks like and how its labels read."""

    name: str
    title: str
    lo: float  # nominal label range [lo, hi] used by scale_mos
    hi: float
    lower_better: bool
    label_file: str  # relative to the dataset root
    label_column: str
    image_dirs: tuple[str, ...]  # candidate image folders, relative to the root ("" = the root itself)
    split_rule: str  # official | random | by_reference | all_test
    layout: str  # the download layout, quoted in error messages


DATASETS: dict[str, DatasetSpec] = {
    "koniq10k": DatasetSpec(
        "koniq10k", "KonIQ-10k", 1.0, 5.0, False, "koniq10k_scores_and_distributions.csv", "MOS",
        ("1024x768", "512x384"), "official",
        "<root>/koniq10k_scores_and_distributions.csv (image_name,...,MOS,...), optional "
        "<root>/koniq10k_distributions_sets.csv (adds `set`), images in <root>/1024x768/ or <root>/512x384/"),
    "spaq": DatasetSpec(
        "spaq", "SPAQ", 0.0, 100.0, False, "Annotations/MOS and Image attribute scores.xlsx", "MOS",
        ("TestImage",), "random",
        "<root>/Annotations/MOS and Image attribute scores.xlsx (Image name, MOS, ...), images in <root>/TestImage/"),
    "livec": DatasetSpec(
        "livec", "LIVE Challenge", 0.0, 100.0, False, "Data/AllMOS_release.mat", "AllMOS_release",
        ("Images",), "all_test",
        "<root>/Data/AllImages_release.mat and <root>/Data/AllMOS_release.mat, images in <root>/Images/"),
    "kadid10k": DatasetSpec(
        "kadid10k", "KADID-10k", 1.0, 5.0, False, "dmos.csv", "dmos",
        ("images",), "by_reference",
        "<root>/dmos.csv (dist_img,ref_img,dmos,var), images in <root>/images/ (I01.png, I01_01_01.png, ...)"),
    "csiq": DatasetSpec(
        "csiq", "CSIQ", 0.0, 1.0, True, "csiq.DMOS.xlsx", "dmos",
        ("dst_imgs",), "all_test",
        "<root>/csiq.DMOS.xlsx (sheet all_by_image: image,dst_idx,dst_type,dst_lev,dmos_std,dmos), "
        "images in <root>/dst_imgs/<type>/<ref>.<TYPE>.<level>.png"),
    "agiqa3k": DatasetSpec(
        "agiqa3k", "AGIQA-3K", 0.0, 5.0, False, "data.csv", "mos_quality",
        ("AGIQA-3K", "AGIQA-3k", "images", ""), "random",
        "<root>/data.csv (name,prompt,...,mos_quality,...), images in <root>/AGIQA-3K/, <root>/images/ or <root>/"),
}


# --------------------------------------------------------------------------- scaling and splits

def scale_mos(mos, lo: float, hi: float, lower_better: bool = False) -> np.ndarray:
    """REFERENCE section 2: s = clip(5 * (mos - lo) / (hi - lo), 0, 4.9), rounded half-up to one decimal.

    Lower-is-better labels use (hi - mos) in place of (mos - lo). Vectorised; returns a float array
    (a 0-d array for a scalar input). NaN stays NaN.
    """
    if not hi > lo:
        raise ValueError(f"scale_mos: need hi > lo, got lo={lo}, hi={hi}")
    x = np.asarray(mos, dtype=np.float64)
    frac = (hi - x) if lower_better else (x - lo)
    s = np.clip(5.0 * frac / (hi - lo), 0.0, 4.9)
    # Half-up rounding; the tiny nudge keeps 2.25 (stored as 2.2499999...) from rounding down.
    return np.floor(s * 10.0 + 0.5 + 1e-9) / 10.0


def split_random(names: Sequence[str], seed: int, train_fraction: float = TRAIN_FRACTION) -> list[str]:
    """Seeded train/test split of items; independent of the order the label file lists them in."""
    return split_by_group(list(names), seed, train_fraction)


def split_by_group(groups: Sequence[str], seed: int, train_fraction: float = TRAIN_FRACTION) -> list[str]:
    """Seeded train/test split where every item of a group (e.g. a reference image) lands on one side."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    unique = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(unique))
    n_train = math.floor(train_fraction * len(unique) + 0.5)
    train = {unique[i] for i in order[:n_train]}
    return ["train" if g in train else "test" for g in groups]


# --------------------------------------------------------------------------- reading label tables

@dataclass
class _Table:
    """A label table: column name -> list of raw string values, with the user-visible row locations."""

    path: Path
    columns: dict[str, list]
    where: list[str]  # "line 5", "row 12", "entry 9" for each data row

    def __len__(self) -> int:
        return len(self.where)


def _require_file(spec_name: str, path: Path, layout: str) -> Path:
    if path.is_file():
        return path
    # Some archives unpack with different letter case (Annotations/ vs annotations/).
    alt = _case_insensitive(path)
    if alt is not None:
        return alt
    raise FileNotFoundError(f"{spec_name}: label file not found: {path}. Expected the download layout: {layout}")


def _case_insensitive(path: Path) -> Path | None:
    parts = path.parts
    cur = Path(parts[0])
    for part in parts[1:]:
        nxt = cur / part
        if not nxt.exists():
            if not cur.is_dir():
                return None
            match = [p for p in cur.iterdir() if p.name.lower() == part.lower()]
            if len(match) != 1:
                return None
            nxt = match[0]
        cur = nxt
    return cur if cur.is_file() else None


def _check_columns(path: Path, found: Sequence[str], required: Sequence[str], where: str = "") -> None:
    missing = [c for c in required if c not in found]
    if missing:
        raise ValueError(
            f"{path}{where}: missing column(s) {missing}; found {list(found)}. "
            f"Use the file exactly as the dataset's download provides it."
        )


def _read_csv(path: Path, required: Sequence[str]) -> _Table:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, skip_blank_lines=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot parse as CSV ({str(e).splitlines()[0]})") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: file is empty; expected a header line with {list(required)}") from None
    df.columns = [str(c).strip() for c in df.columns]
    _check_columns(path, list(df.columns), required)
    # Header is line 1, so data row i sits on line i + 2 (blank lines are kept until here so the count holds;
    # no label file has multi-line quoted fields).
    df = df.fillna("")
    keep = ~(df.apply(lambda col: col.str.strip() == "").all(axis=1)) if len(df.columns) else []
    where = [f"line {i + 2}" for i in np.flatnonzero(np.asarray(keep, dtype=bool))]
    df = df[np.asarray(keep, dtype=bool)]
    return _Table(path, {c: df[c].tolist() for c in df.columns}, where)


def _read_xlsx(path: Path, required: Sequence[str], sheet: str | None = None) -> _Table:
    """Read a sheet whose header row may not be the first row or start in column A (CSIQ's does not)."""
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=False, data_only=True)
    except Exception as e:  # noqa: BLE001 - openpyxl raises zipfile / KeyError / InvalidFileException on bad files
        raise ValueError(f"{path}: cannot open as an Excel .xlsx workbook ({type(e).__name__}: {e})") from None
    try:
        if sheet is not None and sheet not in wb.sheetnames:
            raise ValueError(f"{path}: no sheet named '{sheet}'; sheets found: {wb.sheetnames}")
        ws = wb[sheet] if sheet is not None else wb.worksheets[0]
        rows = list(ws.iter_rows(min_row=1, values_only=True))
    finally:
        wb.close()
    want = {c.lower() for c in required}
    header_at, col_of = None, {}
    for r, row in enumerate(rows[:50]):
        names = {str(v).strip().lower(): j for j, v in enumerate(row) if v is not None and str(v).strip()}
        if want <= set(names):
            header_at = r
            col_of = {str(v).strip(): j for j, v in enumerate(row) if v is not None and str(v).strip()}
            break
    if header_at is None:
        first = next(([v for v in row if v is not None] for row in rows if any(v is not None for v in row)), [])
        raise ValueError(
            f"{path} (sheet '{ws.title}'): no header row with column(s) {list(required)} in the first 50 rows; "
            f"first non-empty row is {first}"
        )
    lower_to_name = {k.lower(): k for k in col_of}
    columns: dict[str, list] = {c: [] for c in col_of}
    where = []
    for r in range(header_at + 1, len(rows)):
        row = rows[r]
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in row):
            continue
        for name, j in col_of.items():
            v = row[j] if j < len(row) else None
            columns[name].append("" if v is None else v)
        where.append(f"row {r + 1}")
    # Callers ask for the canonical spelling; map case-insensitively.
    for c in required:
        if c not in columns:
            columns[c] = columns[lower_to_name[c.lower()]]
    return _Table(path, columns, where)


def _to_float(value) -> float:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if not text:
        return float("nan")
    try:
        return float(text)
    except ValueError:
        return float("nan")


def _labels(table: _Table, column: str, spec: DatasetSpec | None, lo: float, hi: float) -> np.ndarray:
    """Parse a label column; NaN, non-numbers and values outside [lo, hi] are errors naming the row."""
    raw = table.columns[column]
    out = np.empty(len(raw), dtype=np.float64)
    title = spec.title if spec else "declared"
    for i, v in enumerate(raw):
        x = _to_float(v)
        if not math.isfinite(x):
            raise ValueError(
                f"{table.path}: {table.where[i]}, column '{column}': label is empty or not a number ({v!r}); "
                f"fix or remove that row"
            )
        if not lo <= x <= hi:
            raise ValueError(
                f"{table.path}: {table.where[i]}, column '{column}': value {x} is outside the {title} label range "
                f"[{lo}, {hi}]; check that this is the right file and column"
            )
        out[i] = x
    return out


def _names(table: _Table, column: str) -> list[str]:
    names = []
    seen: dict[str, str] = {}
    for i, v in enumerate(table.columns[column]):
        if isinstance(v, float) and v.is_integer():
            v = int(v)  # Excel stores CSIQ's reference "1600" as a number
        name = str(v).strip()
        if not name:
            raise ValueError(f"{table.path}: {table.where[i]}, column '{column}': empty image name")
        if name in seen:
            raise ValueError(
                f"{table.path}: {table.where[i]}, column '{column}': duplicate image name '{name}' "
                f"(first at {seen[name]}); remove one of the two rows"
            )
        seen[name] = table.where[i]
        names.append(name)
    return names


def _image_dir(root: Path, candidates: Sequence[str], probe: str | None) -> Path:
    """The first candidate folder that holds the first listed image, else the first folder that exists."""
    dirs = [root / c if c else root for c in candidates]
    if probe is not None:
        for d in dirs:
            if (d / probe).is_file():
                return d
    for d in dirs:
        if d.is_dir():
            return d
    return dirs[0]


def check_images_exist(paths: Sequence[str], *, dataset: str, label_file: Path | str, layout: str = "") -> None:
    """Raise FileNotFoundError naming the first few listed images that are absent, and how many."""
    missing = [p for p in paths if not Path(p).is_file()]
    if not missing:
        return
    shown = ", ".join(missing[:_MAX_NAMED_MISSING])
    more = f" (and {len(missing) - _MAX_NAMED_MISSING} more)" if len(missing) > _MAX_NAMED_MISSING else ""
    hint = f" Expected the download layout: {layout}" if layout else ""
    raise FileNotFoundError(
        f"{dataset}: {len(missing)} of {len(paths)} images listed in {label_file} are missing: {shown}{more}.{hint}"
    )


# --------------------------------------------------------------------------- the six readers
# Each returns (frame with name, image_path, mos, split-or-None [, ref_name, dist_type, dist_level],
# label file path, image dir).

_KONIQ_SETS = {"training": "train", "train": "train", "validation": "val", "val": "val", "test": "test"}


def _read_koniq(root: Path, spec: DatasetSpec, check: bool):
    scores = root / spec.label_file
    sets = root / "koniq10k_distributions_sets.csv"
    if not scores.is_file() and not sets.is_file():
        _require_file(spec.name, scores, spec.layout)
    label_path = scores if scores.is_file() else sets
    table = _read_csv(label_path, ["image_name", "MOS"])
    names = _names(table, "image_name")
    mos = _labels(table, "MOS", spec, spec.lo, spec.hi)
    split = None
    if sets.is_file():
        st = table if label_path == sets else _read_csv(sets, ["image_name", "set"])
        _check_columns(sets, list(st.columns), ["image_name", "set"])
        set_of = {}
        for i, (n, s) in enumerate(zip(st.columns["image_name"], st.columns["set"])):
            key = str(s).strip().lower()
            if key not in _KONIQ_SETS:
                raise ValueError(
                    f"{sets}: {st.where[i]}, column 'set': unknown value {s!r}; expected training, validation or test"
                )
            set_of[str(n).strip()] = _KONIQ_SETS[key]
        absent = [n for n in names if n not in set_of]
        if absent:
            raise ValueError(
                f"{sets}: {len(absent)} image(s) of {label_path.name} have no `set` entry (first: {absent[:3]}); "
                f"use the sets file from the same KonIQ-10k release or remove it to fall back to a seeded split"
            )
        split = [set_of[n] for n in names]
    img_dir = _image_dir(root, spec.image_dirs, names[0] if names else None)
    df = pd.DataFrame({"name": names, "image_path": [str(img_dir / n) for n in names], "mos": mos})
    df["split"] = split if split is not None else None
    return df, label_path, img_dir


def _read_spaq(root: Path, spec: DatasetSpec, check: bool):
    path = _require_file(spec.name, root / spec.label_file, spec.layout)
    table = _read_xlsx(path, ["Image name", "MOS"])
    names = _names(table, "Image name")
    mos = _labels(table, "MOS", spec, spec.lo, spec.hi)
    img_dir = _image_dir(root, spec.image_dirs, names[0] if names else None)
    df = pd.DataFrame({"name": names, "image_path": [str(img_dir / n) for n in names], "mos": mos, "split": None})
    return df, path, img_dir


_LIVEC_TRAINING = [f"t{i}" for i in range(1, 8)]


def _mat_variable(path: Path, var: str):
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # noqa: BLE001 - scipy raises ValueError / MatReadError / OSError on non-.mat files
        raise ValueError(f"{path}: cannot read as a MATLAB .mat file ({type(e).__name__}: {e})") from None
    if var not in mat:
        found = [k for k in mat if not k.startswith("__")]
        raise ValueError(f"{path}: no variable '{var}' (variables found: {found}); use the LIVE Challenge release file")
    return mat[var]


def _read_livec(root: Path, spec: DatasetSpec, check: bool):
    mos_path = _require_file(spec.name, root / spec.label_file, spec.layout)
    img_path = _require_file(spec.name, root / "Data/AllImages_release.mat", spec.layout)
    cells = _mat_variable(img_path, "AllImages_release")
    # A MATLAB cell array of strings loads as an object array of 1-element string arrays.
    names = []
    for i, c in enumerate(np.asarray(cells, dtype=object).ravel()):
        flat = np.asarray(c).ravel()
        if flat.size != 1 or not isinstance(flat[0], str):
            raise ValueError(f"{img_path}: entry {i + 1} of AllImages_release is not a file name ({c!r})")
        names.append(str(flat[0]).strip())
    mos_all = np.asarray(_mat_variable(mos_path, "AllMOS_release"), dtype=np.float64).ravel()
    if len(mos_all) != len(names):
        raise ValueError(
            f"{mos_path}: AllMOS_release has {len(mos_all)} values but {img_path.name} lists {len(names)} images; "
            f"both files must come from the same release"
        )
    head = [Path(n).stem.lower() for n in names[:7]]
    if head != _LIVEC_TRAINING:
        raise ValueError(
            f"{img_path}: entries 1-7 should be the training images t1..t7 (dropped by convention), found {names[:7]}; "
            f"use the unmodified release files"
        )
    table = _Table(mos_path, {"AllMOS_release": list(mos_all)}, [f"entry {i + 1}" for i in range(len(mos_all))])
    mos = _labels(table, "AllMOS_release", spec, spec.lo, spec.hi)[7:]
    names = names[7:]
    img_dir = _image_dir(root, spec.image_dirs, names[0] if names else None)
    df = pd.DataFrame({"name": names, "image_path": [str(img_dir / n) for n in names], "mos": mos, "split": "test"})
    return df, mos_path, img_dir


_KADID_NAME = re.compile(r"^(I\d+)_(\d+)_(\d+)\.\w+$", re.IGNORECASE)


def _read_kadid(root: Path, spec: DatasetSpec, check: bool):
    path = _require_file(spec.name, root / spec.label_file, spec.layout)
    table = _read_csv(path, ["dist_img", "ref_img", "dmos"])
    names = _names(table, "dist_img")
    refs = [str(r).strip() for r in table.columns["ref_img"]]
    for i, r in enumerate(refs):
        if not r:
            raise ValueError(f"{path}: {table.where[i]}, column 'ref_img': empty reference name")
    mos = _labels(table, "dmos", spec, spec.lo, spec.hi)
    types, levels = [], []
    for n in names:
        m = _KADID_NAME.match(n)
        types.append(int(m.group(2)) if m else None)
        levels.append(int(m.group(3)) if m else None)
    img_dir = _image_dir(root, spec.image_dirs, names[0] if names else None)
    df = pd.DataFrame({
        "name": names, "image_path": [str(img_dir / n) for n in names], "mos": mos, "split": None,
        "ref_name": refs, "dist_type": types, "dist_level": levels,
    })
    return df, path, img_dir


# dst_type as written in csiq.DMOS.xlsx -> (folder under dst_imgs, type token in the file name)
_CSIQ_TYPES = {
    "noise": ("awgn", "AWGN"), "awgn": ("awgn", "AWGN"),
    "jpeg": ("jpeg", "JPEG"),
    "jpeg2000": ("jpeg2000", "jpeg2000"), "jp2k": ("jpeg2000", "jpeg2000"),
    "fnoise": ("fnoise", "fnoise"),
    "blur": ("blur", "BLUR"),
    "contrast": ("contrast", "contrast"),
}


def _read_csiq(root: Path, spec: DatasetSpec, check: bool):
    path = _require_file(spec.name, root / spec.label_file, spec.layout)
    table = _read_xlsx(path, ["image", "dst_type", "dst_lev", "dmos"], sheet="all_by_image")
    mos = _labels(table, "dmos", spec, spec.lo, spec.hi)
    img_dir = _image_dir(root, spec.image_dirs, None)
    listing: dict[Path, dict[str, str]] = {}
    names, refs, types, levels, paths = [], [], [], [], []
    for i in range(len(table)):
        ref = table.columns["image"][i]
        if isinstance(ref, float) and ref.is_integer():
            ref = int(ref)
        ref = str(ref).strip()
        raw_type = str(table.columns["dst_type"][i]).strip()
        key = re.sub(r"[\s_\-]", "", raw_type.lower())
        if key not in _CSIQ_TYPES:
            raise ValueError(
                f"{path}: {table.where[i]}, column 'dst_type': unknown distortion type {raw_type!r}; "
                f"expected one of noise, jpeg, jpeg 2000, fnoise, blur, contrast"
            )
        lev = _to_float(table.columns["dst_lev"][i])
        if not (math.isfinite(lev) and lev.is_integer() and lev >= 1):
            raise ValueError(
                f"{path}: {table.where[i]}, column 'dst_lev': level must be a positive integer, "
                f"got {table.columns['dst_lev'][i]!r}"
            )
        folder, token = _CSIQ_TYPES[key]
        fname = f"{ref}.{token}.{int(lev)}.png"
        fpath = img_dir / folder / fname
        if check and not fpath.is_file():
            # File-name case differs between copies of CSIQ (AWGN vs awgn); match case-insensitively.
            d = img_dir / folder
            if d not in listing:
                listing[d] = {p.name.lower(): p.name for p in d.iterdir()} if d.is_dir() else {}
            real = listing[d].get(fname.lower())
            if real is not None:
                fpath, fname = d / real, real
        names.append(f"{folder}/{fname}")
        refs.append(ref)
        types.append(folder)
        levels.append(int(lev))
        paths.append(str(fpath))
    dup = pd.Series(names).duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise ValueError(f"{path}: {table.where[i]}: duplicate image {names[i]} (same image, type and level twice)")
    df = pd.DataFrame({
        "name": names, "image_path": paths, "mos": mos, "split": "test",
        "ref_name": refs, "dist_type": types, "dist_level": levels,
    })
    return df, path, img_dir


def _read_agiqa(root: Path, spec: DatasetSpec, check: bool):
    path = _require_file(spec.name, root / spec.label_file, spec.layout)
    table = _read_csv(path, ["name", "mos_quality"])
    names = _names(table, "name")
    mos = _labels(table, "mos_quality", spec, spec.lo, spec.hi)
    img_dir = _image_dir(root, spec.image_dirs, names[0] if names else None)
    df = pd.DataFrame({"name": names, "image_path": [str(img_dir / n) for n in names], "mos": mos, "split": None})
    return df, path, img_dir


_READERS: dict[str, Callable] = {
    "koniq10k": _read_koniq, "spaq": _read_spaq, "livec": _read_livec,
    "kadid10k": _read_kadid, "csiq": _read_csiq, "agiqa3k": _read_agiqa,
}

COLUMNS = ("dataset", "name", "image_path", "mos", "mos_scaled", "label", "split",
           "ref_name", "dist_type", "dist_level")


def _finish(df: pd.DataFrame, dataset: str, lo: float, hi: float, lower_better: bool) -> pd.DataFrame:
    df = df.copy()
    df["dataset"] = dataset
    df["mos"] = df["mos"].astype(np.float64)
    df["mos_scaled"] = scale_mos(df["mos"].to_numpy(), lo, hi, lower_better)
    df["label"] = -df["mos"] if lower_better else df["mos"]
    for c in ("ref_name", "dist_type", "dist_level"):
        if c not in df:
            df[c] = None
    return df[list(COLUMNS)].reset_index(drop=True)


def load(name: str, root: str | Path, *, split_seed: int = 0, check_images: bool = True,
         train_fraction: float = TRAIN_FRACTION) -> pd.DataFrame:
    """Load a benchmark dataset from its download folder `root` (layouts in docs/datasets.md).

    Splits: KonIQ-10k uses the official `set` column when koniq10k_distributions_sets.csv is present
    (train/val/test), else a seeded 8:2 train/test; SPAQ and AGIQA-3K a seeded 8:2; KADID-10k a seeded 8:2
    by reference image; LIVE Challenge (t1..t7 dropped) and CSIQ are test only. With check_images,
    every listed image must exist (existence only; images are decoded later with load_rgb).
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in DATASETS:
        raise ValueError(f"unknown dataset '{name}'; known: {sorted(DATASETS)} (or use load_pyiqa_meta)")
    spec = DATASETS[key]
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(
            f"{spec.name}: dataset folder not found: {root}. Expected the download layout: {spec.layout}"
        )
    df, label_path, img_dir = _READERS[key](root, spec, check_images)
    if len(df) == 0:
        raise ValueError(f"{label_path}: no labelled images listed")
    if df["split"].isna().any():
        if spec.split_rule == "by_reference":
            df["split"] = split_by_group(df["ref_name"].tolist(), split_seed, train_fraction)
        else:
            df["split"] = split_random(df["name"].tolist(), split_seed, train_fraction)
    if check_images:
        if not img_dir.is_dir():
            raise FileNotFoundError(
                f"{spec.name}: image folder not found (looked for {[str(root / d) for d in spec.image_dirs]}). "
                f"Expected the download layout: {spec.layout}"
            )
        check_images_exist(df["image_path"].tolist(), dataset=spec.name, label_file=label_path, layout=spec.layout)
    return _finish(df, spec.name, spec.lo, spec.hi, spec.lower_better)


# --------------------------------------------------------------------------- pyiqa meta-info CSVs

_PYIQA_SPLIT_VALUES = {"train": "train", "training": "train", "val": "val", "validation": "val", "test": "test"}


def load_pyiqa_meta(csv_path: str | Path, image_root: str | Path, *, mos_range: Sequence[float], lower_better: bool,
                    dataset: str = "pyiqa", split_column: str | None = None, check_images: bool = True) -> pd.DataFrame:
    """Read a pyiqa (IQA-PyTorch) meta-info CSV.

    No-reference files list `name, mos, ...`; full-reference files `ref_name, dist_name, mos, ...` (told apart
    by which column is numeric, as pyiqa does by position). Image paths are `image_root / name`. The split is
    read from `split_column` (or a column named `official_split` / `split` when present; values train,
    val/validation, test); without one every row is "test".
    """
    csv_path = Path(csv_path).expanduser().resolve()
    image_root = Path(image_root).expanduser().resolve()
    lo, hi = (float(mos_range[0]), float(mos_range[1]))
    if not hi > lo:
        raise ValueError(f"mos_range must be [lo, hi] with hi > lo, got {list(mos_range)}")
    if not csv_path.is_file():
        raise FileNotFoundError(f"{dataset}: pyiqa meta-info CSV not found: {csv_path}")
    table = _read_csv(csv_path, [])
    cols = list(table.columns)
    if len(cols) < 2:
        raise ValueError(f"{csv_path}: a pyiqa meta-info CSV needs at least 2 columns (name, mos); found {cols}")

    def numeric(c):
        return all(math.isfinite(_to_float(v)) for v in table.columns[c])

    if numeric(cols[1]):
        name_col, mos_col, ref_col = cols[0], cols[1], None
    elif len(cols) >= 3 and numeric(cols[2]):
        name_col, mos_col, ref_col = cols[1], cols[2], cols[0]
    else:
        raise ValueError(
            f"{csv_path}: neither column 2 ('{cols[1]}') nor column 3 is entirely numeric; expected pyiqa's "
            f"`name, mos` or `ref_name, dist_name, mos` layout (check for empty or non-numeric labels)"
        )
    names = _names(table, name_col)
    mos = _labels(table, mos_col, None, lo, hi)
    split_col = split_column or next((c for c in ("official_split", "split") if c in cols), None)
    if split_column and split_column not in cols:
        raise ValueError(f"{csv_path}: no split column '{split_column}'; columns: {cols}")
    if split_col:
        split = []
        for i, v in enumerate(table.columns[split_col]):
            s = _PYIQA_SPLIT_VALUES.get(str(v).strip().lower())
            if s is None:
                raise ValueError(
                    f"{csv_path}: {table.where[i]}, column '{split_col}': unknown split {v!r}; "
                    f"expected train, val or test"
                )
            split.append(s)
    else:
        split = ["test"] * len(names)
    df = pd.DataFrame({"name": names, "image_path": [str(image_root / n) for n in names], "mos": mos, "split": split})
    if ref_col is not None:
        df["ref_name"] = [str(r).strip() for r in table.columns[ref_col]]
    if check_images:
        check_images_exist(df["image_path"].tolist(), dataset=dataset, label_file=csv_path,
                           layout=f"images relative to {image_root}")
    return _finish(df, dataset, lo, hi, lower_better)
