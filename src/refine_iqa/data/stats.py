"""Refine-Perception statistics: the numbers and the plots of the paper's Figures 10-12.

Figure 10: box-area ratio histogram per distortion family with a kernel density curve; Figure 11: severity
(level 1-5) counts per family; Figure 12: item counts per family (here with train and test side by side),
plus counts per type. Statistics describe the KEPT items (review status not "rejected"), as the paper's
figures describe the dataset after manual inspection.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from refine_iqa.io_utils import atomic_path

LEVELS = (1, 2, 3, 4, 5)
SPLITS = ("train", "test")
UNASSIGNED = "unassigned"  # kept items without a split yet


def _lib():
    # import_module so a test can substitute the distortion library in sys.modules.
    return importlib.import_module("refine_iqa.distortions")


def _family_order(records: Sequence[Mapping]) -> tuple[list[str], dict[str, str]]:
    """All catalogue families in the library's order (so empty ones still show), then any unknown extras."""
    distortions = _lib()
    order = list(distortions.FAMILIES)
    extras = sorted({r["family"] for r in records} - set(order))
    display = dict(distortions.FAMILY_DISPLAY_NAMES)
    return order + extras, {f: display.get(f, f) for f in order + extras}


def box_area_ratio(rec: Mapping) -> float:
    x1, y1, x2, y2 = rec["box"]
    return (x2 - x1) * (y2 - y1) / float(rec["width"] * rec["height"])


def _kept(records: Iterable[Mapping]) -> list[Mapping]:
    return [r for r in records if r["review"]["status"] != "rejected"]


def _summary(values: Sequence[float]) -> dict:
    if not len(values):
        return {"n": 0, "mean": None, "median": None, "min": None, "max": None, "p10": None, "p90": None}
    v = np.asarray(values, dtype=np.float64)
    return {"n": int(v.size), "mean": float(v.mean()), "median": float(np.median(v)), "min": float(v.min()),
            "max": float(v.max()), "p10": float(np.percentile(v, 10)), "p90": float(np.percentile(v, 90))}


def manifest_stats(records: Sequence[Mapping]) -> dict:
    """Numbers the report prints; counts are over kept items, families in catalogue order (zeros included)."""
    families, _ = _family_order(records)
    kept = _kept(records)
    split_names = list(SPLITS) + ([UNASSIGNED] if any(r.get("split") not in SPLITS for r in kept) else [])
    fam_by_split = {s: {f: 0 for f in families} for s in split_names}
    lvl_by_split = {s: {lv: 0 for lv in LEVELS} for s in split_names}
    family_counts = {f: 0 for f in families}
    level_counts = {lv: 0 for lv in LEVELS}
    type_counts: dict[str, int] = {}
    areas_by_family: dict[str, list[float]] = {f: [] for f in families}
    for r in kept:
        if r["level"] not in LEVELS:
            raise ValueError(f"item {r['id']!r}: level {r['level']!r} is not one of {LEVELS}")
        split = r.get("split") if r.get("split") in SPLITS else UNASSIGNED
        family_counts[r["family"]] += 1
        fam_by_split[split][r["family"]] += 1
        level_counts[r["level"]] += 1
        lvl_by_split[split][r["level"]] += 1
        type_counts[r["type"]] = type_counts.get(r["type"], 0) + 1
        areas_by_family[r["family"]].append(box_area_ratio(r))
    all_areas = [a for f in families for a in areas_by_family[f]]
    return {
        "n_items": len(records),
        "n_kept": len(kept),
        "n_rejected": len(records) - len(kept),
        "n_sources": len({r["source_id"] for r in kept}),
        "split_counts": {s: sum(c.values()) for s, c in fam_by_split.items()},
        "family_counts": family_counts,
        "family_counts_by_split": fam_by_split,
        "type_counts": dict(sorted(type_counts.items())),
        "level_counts": level_counts,
        "level_counts_by_split": lvl_by_split,
        "box_area_ratio": _summary(all_areas),
        "box_area_ratio_by_family": {f: _summary(areas_by_family[f]) for f in families},
    }


# ----------------------------------------------------------------------------------------------------------
# plots


def _save(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_path(path, suffix=".png") as tmp:
        # No "Software" text chunk: the same data gives the same bytes across matplotlib patch versions.
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    return path


def _grid(n: int):
    from matplotlib.figure import Figure

    cols = 4
    rows = max(1, -(-n // cols))
    fig = Figure(figsize=(4 * cols, 3 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def plot_box_area(records: Sequence[Mapping], path: str | Path, *, bins: int = 20) -> Path:
    """Figure 10: per family, histogram of box area / image area with a Gaussian KDE curve (density axis)."""
    from scipy.stats import gaussian_kde

    families, display = _family_order(records)
    kept = _kept(records)
    fig, axes = _grid(len(families))
    edges = np.linspace(0.0, 1.0, bins + 1)
    grid = np.linspace(0.0, 1.0, 201)
    for ax, fam in zip(axes, families):
        vals = np.array([box_area_ratio(r) for r in kept if r["family"] == fam])
        ax.set_title(f"{display[fam]} (n={vals.size})")
        ax.set_xlim(0, 1)
        ax.set_xlabel("box area / image area")
        ax.set_ylabel("count")
        if vals.size == 0:
            ax.text(0.5, 0.5, "no items", ha="center", va="center", transform=ax.transAxes)
            continue
        ax.hist(vals, bins=edges, color="tab:blue", alpha=0.8)
        if vals.size >= 2 and np.ptp(vals) > 0:
            # Scale the density to counts per bin so curve and bars share one axis.
            ax.plot(grid, gaussian_kde(vals)(grid) * vals.size * (edges[1] - edges[0]), color="tab:red")
    fig.suptitle("Distortion area sizes per family")
    return _save(fig, Path(path))


def plot_severity(records: Sequence[Mapping], path: str | Path) -> Path:
    """Figure 11: per family, item counts at each level 1-5."""
    families, display = _family_order(records)
    kept = _kept(records)
    fig, axes = _grid(len(families))
    for ax, fam in zip(axes, families):
        counts = [sum(1 for r in kept if r["family"] == fam and r["level"] == lv) for lv in LEVELS]
        ax.bar(LEVELS, counts, color="tab:blue")
        ax.set_xticks(LEVELS)
        ax.set_title(f"{display[fam]} (n={sum(counts)})")
        ax.set_xlabel("level")
        ax.set_ylabel("count")
    fig.suptitle("Distortion severity levels per family")
    return _save(fig, Path(path))


def plot_family_counts(records: Sequence[Mapping], path: str | Path) -> Path:
    """Figure 12: items per family (left) and each family's share of train and of test side by side (right)."""
    from matplotlib.figure import Figure

    stats = manifest_stats(records)
    families, display = _family_order(records)
    labels = [display[f] for f in families]
    x = np.arange(len(families))
    fig = Figure(figsize=(max(12, 1.6 * len(families)), 4.5), layout="constrained")
    ax_all, ax_split = fig.subplots(1, 2)
    ax_all.bar(x, [stats["family_counts"][f] for f in families], color="tab:blue")
    ax_all.set_title(f"Items per distortion category (kept, n={stats['n_kept']})")
    ax_all.set_ylabel("items")
    for k, split in enumerate(SPLITS):
        counts = np.array([stats["family_counts_by_split"][split][f] for f in families], dtype=np.float64)
        share = 100.0 * counts / counts.sum() if counts.sum() else counts
        ax_split.bar(x + (k - 0.5) * 0.4, share, width=0.4, label=f"{split} (n={int(counts.sum())})")
    # Shares, not counts: test is far smaller than train, and the point is that the distributions match.
    ax_split.set_title("Share of each split")
    ax_split.set_ylabel("% of split")
    ax_split.legend()
    for ax in (ax_all, ax_split):
        ax.set_xticks(x, labels, rotation=35, ha="right")
    return _save(fig, Path(path))


def plot_type_counts(records: Sequence[Mapping], path: str | Path) -> Path:
    """Items per distortion type (all types of the catalogue, zeros included), horizontal bars."""
    from matplotlib.figure import Figure

    distortions = _lib()
    counts = manifest_stats(records)["type_counts"]
    names = sorted(set(distortions.names()) | set(counts))
    fig = Figure(figsize=(7, max(4, 0.25 * len(names))), layout="constrained")
    ax = fig.subplots()
    ax.barh(np.arange(len(names)), [counts.get(n, 0) for n in names], color="tab:blue")
    ax.set_yticks(np.arange(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("items")
    ax.set_title("Distortion types (kept items)")
    return _save(fig, Path(path))


def write_stats_plots(records: Sequence[Mapping], out_dir: str | Path, *, bins: int = 20) -> dict[str, Path]:
    """Write the four PNGs into `out_dir`; returns {name: path}."""
    out_dir = Path(out_dir)
    return {
        "box_area": plot_box_area(records, out_dir / "box_area_by_family.png", bins=bins),
        "severity": plot_severity(records, out_dir / "severity_by_family.png"),
        "families": plot_family_counts(records, out_dir / "family_counts.png"),
        "types": plot_type_counts(records, out_dir / "type_counts.png"),
    }
