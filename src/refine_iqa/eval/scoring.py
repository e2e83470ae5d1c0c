"""Table 3 (and the Stage-2 before/after figures): scoring on a dataset in both inference modes."""

from __future__ import annotations

import math

from refine_iqa.eval import metrics
from refine_iqa.generation import score_samples


def evaluate_scoring(model, processor, samples: list[dict], labels: list[float], *, think: bool, tags="paper",
                     max_new_tokens: int = 48, batch_size: int = 16, scaled: list[float] | None = None,
                     progress=None, journal=None) -> tuple[dict, list[dict]]:
    """Correlations of the prob (Eq. 8) and numeric scores with `labels` (raw, sign-corrected), plus hit rate
    and MAE against `scaled` ([0,5) MOS) and format compliance. Unparsable numeric answers count as misses and
    are left out of the numeric correlations (their share is reported). Samples whose image cannot be decoded
    are left out and listed in `skipped_unreadable`. With `journal`, finished batches are kept on disk and a
    re-run scores only the rest."""
    scaled = labels if scaled is None else scaled
    outs = score_samples(model, processor, samples, think=think, tags=tags, max_new_tokens=max_new_tokens,
                         batch_size=batch_size, progress=progress, journal=journal)
    bad = [i for i, o in enumerate(outs) if o.get("error") is not None]
    skipped_unreadable = [samples[i]["image_paths"][0] if samples[i].get("image_paths") else samples[i]["item_id"]
                          for i in bad]
    if bad:
        keep = [i for i in range(len(outs)) if outs[i].get("error") is None]
        samples, outs = [samples[i] for i in keep], [outs[i] for i in keep]
        labels, scaled = [labels[i] for i in keep], [scaled[i] for i in keep]
    result: dict = {"n": len(samples), "format_compliance": metrics.accuracy([o["format_ok"] for o in outs])}
    prob = [o["prob"] for o in outs]
    result["prob"] = {**metrics.correlation_report(prob, labels), "hit_rate": metrics.hit_rate(prob, scaled),
                      "mae_scaled": metrics.mae(prob, scaled)}
    num = [o["numeric"] if o["numeric"] is not None else math.nan for o in outs]
    parsed = [(n, y) for n, y in zip(num, labels) if not math.isnan(n)]
    result["numeric"] = {
        **(metrics.correlation_report([p for p, _ in parsed], [y for _, y in parsed]) if parsed else {"n": 0}),
        "parse_rate": len(parsed) / len(outs) if outs else math.nan,
        "hit_rate": metrics.hit_rate(num, scaled),
        "mae_scaled": metrics.mae([n for n in num if not math.isnan(n)],
                                  [s for n, s in zip(num, scaled) if not math.isnan(n)]) if parsed else math.nan,
    }
    result["skipped_unreadable"] = skipped_unreadable
    preds = [{"item_id": s["item_id"], "label": y, "mos_scaled": sc, **o} for s, y, sc, o in zip(samples, labels, scaled, outs)]
    return result, preds
