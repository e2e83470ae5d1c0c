"""results/metrics.json (every number of the run) and reports/report.md (rendered from it alone)."""

from __future__ import annotations

import math
import os
from pathlib import Path

from refine_iqa.eval.perception import TABLE_FAMILIES
from refine_iqa.io_utils import atomic_write_json, atomic_write_text, read_json, read_jsonl

# The paper's own numbers, printed beside ours for reference (Tables 1-3, overall columns).
PAPER = {
    "table1_overall": {"base": 0.5125, "stage1": 0.7637, "stage2-main": 0.7318},
    "table2_overall_s1": 0.772,
    "table3": {"koniq10k": (0.938, 0.924), "spaq": (0.927, 0.921), "livec": (0.860, 0.885),
               "agiqa3k": (0.798, 0.841), "kadid10k": (0.698, 0.702), "csiq": (0.724, 0.758)},
    "table4_overall_s2_think": 0.8148,
}
CURVE_KEYS = ("reward", "reward_std", "rewards/answer_reward/mean", "rewards/format_reward/mean",
              "rewards/pd_reward/mean", "rewards/description_reward/mean", "rewards/grounding_reward/mean",
              "completions/mean_length", "think/mean_words", "groups/frac_with_correct", "pd/r_ref", "loss",
              "learning_rate")


def _window_mean(curve: list[dict], key: str, first: bool, n: int = 20) -> float:
    vals = [r[key] for r in curve if key in r]
    vals = vals[:n] if first else vals[-n:]
    return sum(vals) / len(vals) if vals else math.nan


def collect_metrics(params: dict, out_path, *, variants: list[str]) -> dict:
    R = Path(params["paths"]["results"])
    m: dict = {"configuration": "paper" if params.get("overlay") else "embedded",
               "synthetic_scoring_data": params["data"]["scoring"]["source"] == "synthetic",
               "perception": {}, "scoring": {}, "curves": {}, "data": read_json(R / "perception_data_stats.json")}
    for name in ("base", "stage1", "stage2-main"):
        m["perception"][name] = read_json(R / "perception" / f"{name}.json")
    for name in ["base", "stage1"] + [f"stage2-{v}" for v in variants]:
        m["scoring"][name] = read_json(R / "scoring" / f"{name}.json")
    m["qbench"] = {name: read_json(R / "qbench" / f"{name}.json") for name in ("base", "stage1", "stage2-main")}
    m["baselines"] = read_json(R / "baselines.json")
    for stage in ["stage1"] + [f"stage2-{v}" for v in variants]:
        curve = read_jsonl(R / "curves" / f"{stage}.jsonl")
        m["curves"][stage] = {"steps": len({r["step"] for r in curve if "step" in r}), **{
            k: {"first20": _window_mean(curve, k, True), "last20": _window_mean(curve, k, False)}
            for k in CURVE_KEYS if any(k in r for r in curve)}}
    m["blind"] = blind_baselines(params)
    m["ablation_spread"] = ablation_spread(params, variants)
    m["measured_seed_spread"] = _measured_seed_spread(params)
    atomic_write_json(out_path, m)
    return m


def _measured_seed_spread(params: dict) -> dict:
    """Stage-2-main's training-seed spread from benchmarks/stage2_seed_spread.py, with whether it applies to this
    checkout's code and settings (eval/seed_spread.py); the per-seed values stay in the measurement file."""
    from refine_iqa.eval.seed_spread import measured_spread

    ms = measured_spread(params)
    keep = ("status", "summary", "measured_at", "commit", "machine", "offsets", "threads", "fingerprint")
    return {k: ms[k] for k in keep if k in ms}


def blind_baselines(params: dict) -> dict:
    """The best scores an answer that ignores the image gets on this run's test splits (eval/blind.py)."""
    from refine_iqa.data.qbench import load_llvisionqa
    from refine_iqa.eval import blind
    from refine_iqa.stages.common import scoring_eval_sets

    W = Path(params["paths"]["work"])
    items = [r for r in read_jsonl(W / "perception" / "manifest.jsonl") if r.get("split") == "test"]
    out: dict = {"perception": blind.perception_baseline(items)}
    out["scoring"] = {ds: blind.scoring_baseline([r["mos_scaled"] for r in recs])
                      for ds, recs in scoring_eval_sets(params, W / "scoring" / "scoring_test.jsonl").items()}
    root = params["data"]["scoring"]["qbench_root"] or W / "qbench"
    q = blind.qbench_baseline(load_llvisionqa(root, params["evaluate"]["qbench_split"], check_images=False))
    out["qbench"] = {k: v for k, v in q.items() if k != "choices"}
    return out


BOOTSTRAP = 1000


def ablation_spread(params: dict, variants: list[str], seed: int = 0) -> dict:
    """Each Stage-2 variant's SRCC gap to main (think, probability score) per test dataset, with two spreads.

    - Test sample: the paired bootstrap over the test images (the same resampled images for every model,
      BOOTSTRAP times); the 5th-95th percentile of the gap averaged over the training seeds.
    - Training seeds (when `variants` holds `_seed<k>` replicates, ablations.seeds): each seed's gap pairs
      `<variant>_seed<k>` with `main_seed<k>`; `seed_spread` summarises them with main's own seed-to-seed std.

    With one seed per variant the gap and its bootstrap spread are exactly those of that one run."""
    import numpy as np

    from refine_iqa.eval import metrics
    from refine_iqa.variants import parse_stage2_name

    W = Path(params["paths"]["work"]) / "predictions"
    runs: dict[str, dict[int, str]] = {}  # variant -> seed offset -> run name
    for name in variants:
        v, k = parse_stage2_name(name)
        runs.setdefault(v, {})[k] = name
    seeds = sorted({k for by_seed in runs.values() for k in by_seed})

    def probs(name):
        rows = [r for r in read_jsonl(W / f"scoring-{name}.jsonl") if r["mode"] == "think"]
        return {(r["dataset"], r["item_id"]): (r["prob"], r["label"]) for r in rows}

    preds = {name: probs(f"stage2-{name}") for by_seed in runs.values() for name in by_seed.values()}
    main = preds["main"]
    rng = np.random.default_rng(seed)
    out: dict = {}
    for ds in sorted({d for d, _ in main}):
        keys = sorted(k for k in main if k[0] == ds)
        draws = [rng.integers(0, len(keys), len(keys)) for _ in range(BOOTSTRAP)]
        y = np.array([main[k][1] for k in keys])

        def scores(name):
            """(full-set SRCC, SRCC on each resample) of run `name`; None if its test items differ from main's."""
            if any(k not in preds[name] for k in keys):
                return None
            p = np.array([preds[name][k][0] for k in keys])
            return metrics.srcc(p, y), np.array([metrics.srcc(p[d], y[d]) for d in draws])

        main_scores = {k: scores(name) for k, name in runs["main"].items()}
        for v, by_seed in runs.items():
            if v == "main":
                continue
            per_seed, gaps, draw_gaps = {}, {}, []
            for k in seeds:
                if k not in by_seed or main_scores.get(k) is None:
                    continue  # no replicate for this seed (or main's differs): stated by seed_spread as missing
                sv = scores(by_seed[k])
                if sv is None:
                    per_seed[str(k)] = {"error": "test items differ from main's"}
                    continue
                (full_v, dv), (full_m, dm) = sv, main_scores[k]
                gaps[k] = full_v - full_m
                d = (dv - dm)[~np.isnan(dv - dm)]
                per_seed[str(k)] = {"gap": gaps[k], "srcc": full_v, "main_srcc": full_m,
                                    "p05": float(np.percentile(d, 5)) if len(d) else math.nan,
                                    "p95": float(np.percentile(d, 95)) if len(d) else math.nan}
                if not math.isnan(gaps[k]):
                    draw_gaps.append(dv - dm)
            if not gaps:
                out.setdefault(v, {})[ds] = {"error": "test items differ from main's"}
                continue
            spread = seed_spread(seeds, gaps, {k: s[0] for k, s in main_scores.items() if s is not None})
            mean_draws = np.mean(draw_gaps, axis=0) if draw_gaps else np.array([])
            mean_draws = mean_draws[~np.isnan(mean_draws)]  # a resample of one distinct image has no SRCC
            out.setdefault(v, {})[ds] = {
                "gap": spread["mean"], "n": len(keys),
                "p05": float(np.percentile(mean_draws, 5)) if len(mean_draws) else math.nan,
                "p95": float(np.percentile(mean_draws, 95)) if len(mean_draws) else math.nan,
                "per_seed": per_seed, "seeds": spread}
    return out


def seed_spread(seeds: list[int], gaps: dict[int, float], main_srcc: dict[int, float]) -> dict:
    """The spread of one variant's gap to main across training seeds.

    `seeds`: the configured seed offsets; `gaps`: offset -> the gap of `<variant>_seed<k>` to `main_seed<k>`
    (an offset without both replicates is absent: "missing"); `main_srcc`: offset -> main's own SRCC. A NaN
    (SRCC undefined: constant labels, too few items or a non-finite score; constant PREDICTIONS score 0 in
    metrics.srcc and stay) is left out and listed under "undefined". mean: over the seeds used; min/max: of the
    per-seed gaps; main_std: the sample standard deviation (n - 1) of main's SRCC over seeds. With fewer than
    two values a spread is undefined (NaN, rendered "-")."""
    from refine_iqa.eval.seed_spread import summarise

    missing = [k for k in seeds if k not in gaps]
    undefined = [k for k in seeds if k in gaps and math.isnan(gaps[k])]
    used = [k for k in seeds if k in gaps and not math.isnan(gaps[k])]
    g = [gaps[k] for k in used]
    main = summarise({k: main_srcc[k] for k in seeds if k in main_srcc})  # NaN left out, sample std
    return {
        "configured": list(seeds), "used": used, "missing": missing, "undefined": undefined,
        "mean": sum(g) / len(g) if g else math.nan,
        "min": min(g) if len(g) >= 2 else math.nan,
        "max": max(g) if len(g) >= 2 else math.nan,
        "main_std": main["std"],
        "main_n": main["n"],
    }


def gap_verdict(gap: float, p05: float, p95: float, seeds: dict | None = None, noise: float | None = None) -> str:
    """Whether a gap to main is a difference: it must lie outside the test-sample (bootstrap) spread, i.e.
    0 is not within p05..p95, and, when several seeds were trained, outside the training-seed spread: every
    seed's gap has the same sign (0 not within min..max) AND the mean gap exceeds main's own seed-to-seed std.
    With one seed per variant, `noise` (a measured seed-noise band for the gap of two single runs,
    eval/seed_spread.py) adds the second condition |gap| > noise."""
    if any(math.isnan(x) for x in (gap, p05, p95)):
        return "undetermined: SRCC undefined (constant labels or a non-finite score)"
    boot_in = p05 <= 0.0 <= p95
    if seeds is None or len(seeds["configured"]) < 2:
        if noise is None or math.isnan(noise):
            return "no: within the test-sample spread" if boot_in else "yes, beyond the test-sample spread"
        return _two_spread_verdict(boot_in, abs(gap) <= noise, "the measured seed noise")
    if math.isnan(seeds["min"]):
        return f"no: training-seed spread not measured ({len(seeds['used'])} usable seed)"
    seed_in = seeds["min"] <= 0.0 <= seeds["max"] or abs(gap) <= seeds["main_std"]
    return _two_spread_verdict(boot_in, seed_in, "the training-seed spread")


def _two_spread_verdict(boot_in: bool, seed_in: bool, seed_name: str) -> str:
    """The verdict once both spreads are known: a difference only outside both."""
    if boot_in and seed_in:
        return "no: within both spreads"
    if boot_in:
        return "no: within the test-sample spread"
    if seed_in:
        return f"no: within {seed_name}"
    return "yes, beyond both spreads"


def _ablation_gap_section(spread: dict, measured: dict | None = None) -> list[str]:
    """Table 5's gap rows: one seed per variant (today's default; with main's measured seed noise when a
    measurement applies to this code and these settings) or the seed-replicate view."""
    several = any(len(g.get("seeds", {}).get("configured", [0])) > 1 for per in spread.values() for g in per.values())
    measured = measured or {"status": "absent"}
    summary = measured.get("summary", {}) if measured["status"] == "applies" and not several else {}

    def dash(x):
        return "-" if x is None or math.isnan(x) else f"{x:+.3f}"

    rows, notes = [], []
    for v, per in spread.items():
        for ds, g in per.items():
            noise = summary[ds]["noise"] if ds in summary else None
            if "error" in g:
                rows.append([v, ds, g["error"]] + ["-"] * (5 if several else (3 if summary else 2)))
                continue
            s = g.get("seeds")
            boot = f"{dash(g['p05'])} .. {dash(g['p95'])}"
            verdict = gap_verdict(g["gap"], g["p05"], g["p95"], s, noise=noise)
            if not several:
                rows.append([v, ds, dash(g["gap"]), boot] + ([_pm(noise)] if summary else []) + [verdict])
                continue
            seed_range = "-" if math.isnan(s["min"]) else f"{dash(s['min'])} .. {dash(s['max'])}"
            main_std = "-" if math.isnan(s["main_std"]) else f"{s['main_std']:.3f}"
            rows.append([v, ds, f"{len(s['used'])} of {len(s['configured'])}", dash(g["gap"]), boot, seed_range,
                         main_std, verdict])
            for k in s["missing"]:
                notes.append(f"- {v} / {ds}: seed offset {k} has no replicate pair ({v}_seed{k} or main_seed{k} "
                             "missing, or its test items differ from main's): skipped for that seed.")
            for k in s["undefined"]:
                notes.append(f"- {v} / {ds}: seed offset {k}: SRCC undefined (constant labels or a non-finite score): skipped.")
    if not rows:
        return []
    if not several:
        intro = ("Gap of each variant to main (SRCC think, probability score), with its spread: the 5th-95th "
                 f"percentile of the same gap over {BOOTSTRAP} paired bootstrap resamples of the test images. That "
                 "spread covers the test sample only; each variant is ONE training run (one seed). A gap inside its "
                 "spread is noise.")
        if summary:
            return [intro + " " + _measured_noise_text(measured, summary), "",
                    _table(["variant", "dataset", "gap to main", "test-sample spread (5%..95%)",
                            "measured seed noise", "a difference?"], rows), ""]
        how = ("To measure the seed spread, set `ablations.seeds: [0, 1, 2]` in params.yaml (main and every variant "
               "are trained again with seeds `seed + 1` and `seed + 2`, runs `<variant>_seed1`, `_seed2`, and this "
               "table shows both spreads), or measure main's seed noise once with `python "
               "benchmarks/stage2_seed_spread.py` after `make run` (it writes benchmarks/measured/; the report applies "
               "the measurement while the code and settings stay the same).")
        if measured["status"] == "stale":
            from refine_iqa.eval.seed_spread import MEASURED_REL

            why = (f" A seed-noise measurement exists ({MEASURED_REL}, {measured.get('measured_at', '?')}) but was "
                   "made with other code or settings than this run's (its fingerprint differs), so it is NOT "
                   "applied.")
        else:
            why = ""
        return [intro + " The spread between training seeds, not measured for this run, comes on top." + why
                + " " + how, "",
                _table(["variant", "dataset", "gap to main", "spread (5%..95%)", "a difference?"], rows), ""]
    return ["Gap of each variant to main (SRCC think, probability score), averaged over training seeds: seed "
            "offset k pairs `<variant>_seed<k>` with `main_seed<k>` (offset 0: the plain runs). Two spreads: the "
            f"test sample (5th-95th percentile of the seed-averaged gap over {BOOTSTRAP} paired bootstrap resamples "
            "of the test images) and the training seeds (min..max of the per-seed gaps; main's own SRCC std from "
            "seed to seed, n - 1). A gap is a difference only outside BOTH: 0 outside the bootstrap spread, every "
            "seed's gap of the same sign, and the mean gap larger than main's seed std. '-': fewer than two seeds.",
            "", _table(["variant", "dataset", "seeds used", "mean gap to main", "test-sample spread (5%..95%)",
                        "per-seed gaps (min..max)", "main SRCC seed std", "a difference?"], rows), ""] \
        + (notes + [""] if notes else [])


def _pm(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"+-{x:.3f}"


def _measured_noise_text(measured: dict, summary: dict) -> str:
    """Table 5's sentence on main's measured training-seed spread (eval/seed_spread.py)."""
    from refine_iqa.eval.seed_spread import MEASURED_REL, NOISE_SIGMAS

    per_ds = "; ".join(f"{ds}: mean {x['mean']:.3f}, std {x['std']:.3f}, {x['min']:.3f} .. {x['max']:.3f}"
                       for ds, x in summary.items())
    n = max(x["n"] for x in summary.values())
    return (f"The training-seed noise is measured: Stage-2-main trained with {n} seeds from this run's Stage-1 "
            f"model ({MEASURED_REL}, `benchmarks/stage2_seed_spread.py`, {measured.get('measured_at', '?')}, "
            f"{measured.get('machine', '?')}; it applies because the code and settings that produce main are "
            f"unchanged since) gives main's SRCC {per_ds}. A gap between two single runs moves by seed alone within "
            f"+-{NOISE_SIGMAS:g} x sqrt(2) x std (the 'measured seed noise' column); a gap is a difference only outside both that "
            "band and the test-sample spread.")


# The paper's column headers for Tables 1-2 (Comp. = compression, OE/UE = over/underexposure, ...).
PAPER_COLUMNS = {"blur": "Blur", "noise": "Noise", "compression": "Comp.", "brighten": "OE", "darken": "UE",
                 "saturate_strengthen": "OSat.", "saturate_weaken": "DSat.", "oversharpen": "OSharp.",
                 "contrast_strengthen": "HC", "contrast_weaken": "LC", "pixelate": "Pixel.", "quantization": "Quant."}


def _fmt(x, pct=False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.2f}%" if pct else f"{x:.3f}"


def _answer_cell(text, limit: int = 48) -> str:
    """A model's answer inside a Markdown table cell: shortened, pipes and backticks made harmless."""
    if text is None:
        return "n/a"
    text = " ".join(str(text).split())
    text = text if len(text) <= limit else text[:limit - 3] + "..."
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


def _stage1_answers_section(m: dict) -> list[str]:
    """What the greedy answers look like before/after Stage-1: parsable share, variety, the most frequent
    answer, and the Stage-1 training rewards (first vs last 20 steps)."""
    rows = []
    for name in ("base", "stage1", "stage2-main"):
        # .get: a results/perception/*.json written before these fields existed still renders (as n/a); the
        # workflow does not re-run an evaluation when only library code changed.
        p = m["perception"][name]
        row = [name]
        for task in ("description", "grounding"):
            a = p.get("answers", {}).get(task, {})
            share = a.get("top_share")
            row += [_fmt(p[task]["all"].get("parse_rate"), True), f"{a.get('distinct', 'n/a')} / {a.get('n', 'n/a')}",
                    f"{_answer_cell(a.get('top_answer'))} ({_fmt(share, True)})"]
        rows.append(row)
    out = ["## Stage-1 before / after: what the models answer (FR + NR test split, greedy)", "",
           _table(["model", "description parsable", "distinct descriptions", "most frequent description",
                   "box parsable", "distinct boxes", "most frequent box"], rows), ""]
    c = m["curves"].get("stage1", {})
    rows = [[k.removeprefix("rewards/").removesuffix("/mean"), _fmt(c[k]["first20"]), _fmt(c[k]["last20"])]
            for k in ("rewards/description_reward/mean", "rewards/grounding_reward/mean", "rewards/format_reward/mean")
            if k in c]
    if rows:
        out += [f"Stage-1 training rewards ({c.get('steps')} steps), mean of the first and last 20 steps:", "",
                _table(["reward", "first 20", "last 20"], rows), ""]
    if m["configuration"] == "embedded":
        n_fam = len(m.get("data", {}).get("stats", {}).get("family_counts", {})) or "its"
        out += ["> At the embedded size a single answer string for every image (distinct = 1) means the policy has "
                "collapsed: it ignores the image. This run's Stage-1 trains "
                f"{c.get('steps', 'its')} GRPO steps, too few for the tiny model to learn either skill from this "
                f"run's data ({n_fam} distortion families, object-sized regions). That Stage-1's GRPO can teach this model to read the image "
                "is shown separately, on narrower data and with more rollouts than `make run` can afford on two "
                "cores: the distortion family by tests/test_learnability_stage1.py (250 steps of 64 rollouts) and "
                "the distorted region by tests/test_learnability_grounding.py (128 rollouts a step until the IoU "
                "rises, 116-1080 steps on the seeds measured); docs/learnability.md.", ""]
    return out


BLIND_LABEL = "blind (ignores the image)"


def _qbench_blind_how(bq: dict) -> str:
    """How the Q-Bench blind answer chose (eval/blind.py qbench_baseline); metrics from before the letter
    strategy existed carry no `strategy` and were the text prior."""
    strategy = bq.get("strategy", "text")
    if strategy == "text":
        return "the option text most often right on the other questions"
    return f"always answer {strategy.split()[-1]} (the letter right most often)"


def _blind_note(m: dict) -> list[str]:
    """How the blind rows of Tables 1-2 were made (eval/blind.py)."""
    b = m.get("blind", {}).get("perception")
    if b is None:
        return []
    box = ", ".join(f"{v:.3f}" for v in b["answer"]["box_relative"])
    return [f"Blind rows: the best answer that ignores the image, fitted on the test split itself. Table 1: the "
            f"constant `{b['answer']['description']}` (the listed object most often right; the most frequent "
            f"distortion / severity pair), per-field rows use each field's majority. Table 2: the constant box "
            f"[{box}] (fractions of width / height) maximising mean IoU (grid search + refinement). A model beats "
            "these only by reading the image.", ""]


def _blind_margins(m: dict) -> list[str]:
    """One table up front: each model's headline number minus the blind baseline's (positive = the model
    does better than any answer that ignores the image)."""
    b = m.get("blind")
    if not b:
        return []
    rows = []

    def row(what, name, value, blind_value, higher_better=True, pct=False):
        if value is None or blind_value is None or any(isinstance(x, float) and math.isnan(x) for x in (value, blind_value)):
            margin = math.nan
        else:
            margin = (value - blind_value) if higher_better else (blind_value - value)
        rows.append([what, name, _fmt(value, pct), _fmt(blind_value, pct), _fmt(margin, pct)])

    for name in ("base", "stage1", "stage2-main"):
        p = m["perception"][name]
        row("Table 1 description accuracy (FR + NR)", name, p["description"]["all"]["overall"],
            b["perception"]["description"]["all"]["overall"], pct=True)
        row("distortion-family accuracy (FR + NR)", name, p["description"]["all"].get("family_accuracy"),
            b["perception"]["description"]["all"]["family_accuracy"], pct=True)
        row("Table 2 grounding IoU (FR + NR)", name, p["grounding"]["all"]["overall"],
            b["perception"]["grounding"]["all"]["overall"])
    for name in ("stage1", "stage2-main"):
        for ds, r in m["scoring"][name]["datasets"].items():
            if ds not in b["scoring"]:
                continue
            t = r["think"]["numeric"]
            row(f"hit rate, think ({ds})", name, t["hit_rate"], b["scoring"][ds]["hit_rate"])
            row(f"MAE, think ({ds}; lower is better)", name, t["mae_scaled"], b["scoring"][ds]["mae"], higher_better=False)
    for name, q in m.get("qbench", {}).items():
        row("Table 4 Q-Bench overall (think)", name, q["think"]["accuracy"]["overall"],
            b["qbench"]["accuracy"]["overall"], pct=True)
    return ["## Against the blind baselines", "",
            "Each model's headline number beside the best score of an answer that ignores the image (fitted on the "
            "test split; how: the notes under Tables 1-2 and docs/DECISIONS.md). Margin > 0: the model does better "
            "than any image-blind answer. SRCC needs no baseline row: a constant scores 0.", "",
            _table(["measure", "model", "value", "blind", "margin"], rows), "",
            "MAE counts the parsable answers only (their share: Table 6), so a model that rarely writes a score can "
            "show a small MAE beside a zero hit rate; the hit rate counts every answer.", ""]


def skill_kept(base: float, stage1: float, stage2: float) -> float:
    """Share of Stage-1's gain over the base that Stage-2 keeps: (stage2 - base) / (stage1 - base); NaN when
    Stage-1 gained nothing (there is nothing to keep). 1 = all kept, 0 = back to the base, < 0 = below it."""
    values = (base, stage1, stage2)
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values) or stage1 <= base:
        return math.nan
    return (stage2 - base) / (stage1 - base)


def _skill_kept_section(m: dict) -> list[str]:
    """Does Stage-2 (scoring) keep what Stage-1 taught (perception)? The paper's claim for the multi-stage
    design; measured on Tables 1-2's FR + NR numbers. A Stage-1 gain that does not beat the blind baseline is
    no perception skill (a constant answer does as well), so its share is not printed: a ratio of two noise-sized
    differences read as -934% in a make run."""
    p = m.get("perception", {})
    if not all(k in p for k in ("base", "stage1", "stage2-main")):
        return []
    blind = m.get("blind", {}).get("perception")
    rows = []
    for what, get, pct in (
            ("distortion-family accuracy", lambda x: x["description"]["all"].get("family_accuracy"), True),
            ("description accuracy (all fields)", lambda x: x["description"]["all"]["overall"], True),
            ("grounding IoU", lambda x: x["grounding"]["all"]["overall"], False)):
        b, s1, s2 = (get(p[k]) for k in ("base", "stage1", "stage2-main"))
        bl = get(blind) if blind else None
        kept = skill_kept(b, s1, s2)
        if math.isnan(kept):
            share = "n/a (Stage-1 gained nothing)"
        elif bl is not None and not math.isnan(bl) and s1 <= bl:
            share = "n/a (Stage-1 not above blind)"
        else:
            share = f"{100 * kept:.0f}%"
        rows.append([what, _fmt(b, pct), _fmt(s1, pct), _fmt(s2, pct), _fmt(bl, pct) if blind else "-", share])
    return ["### Stage-1 skill kept after Stage-2", "",
            "Kept = (Stage-2-main - base) / (Stage-1 - base): the share of Stage-1's perception gain still there "
            "after the scoring stage; printed only where Stage-1 beats the blind answer (a gain below it is no "
            "skill that reads the image).", "",
            _table(["measure", "base", "Stage-1", "Stage-2-main", "blind", "kept"], rows), ""]


def _qbench_section(m: dict) -> list[str]:
    """Table 4: each model's accuracy per question type and concern, how many answers were readable, and the
    blind row."""
    out = ["## Table 4: Q-Bench (LLVisionQA) multiple-choice accuracy", ""]
    q0 = next(iter(m.get("qbench", {}).values()), None)
    if q0:
        if q0.get("synthetic"):
            out += ["> SYNTHETIC questions in the LLVisionQA file format, generated from this run's own images and "
                    "what the data engine knows about them (no Q-Bench folder configured).", ""]
        cols = ["yes-or-no", "what", "how", "technical", "other", "in-context technical", "in-context other", "overall"]
        rows = [[f"{name} ({mode.replace('_', '-')})"] + [_fmt(q[mode]["accuracy"][c], True) for c in cols]
                + [f"{q['n'] - q[mode]['unanswered']} / {q['n']}"]
                for name, q in m["qbench"].items() for mode in ("no_think", "think")]
        bq = m.get("blind", {}).get("qbench")
        if bq is not None:
            rows.append([f"{BLIND_LABEL}: {_qbench_blind_how(bq)}"] + [_fmt(bq["accuracy"][c], True) for c in cols]
                        + ["-"])
        out += [f"Split: {q0['split']}, {q0['n']} questions.", "", _table(["model"] + cols + ["answered"], rows), ""]
        if m.get("configuration") == "embedded" and any(q[mode]["unanswered"] == q["n"] for q in m["qbench"].values()
                                                        for mode in ("no_think", "think")):
            out += ["'answered': the answers `parse_choice` reads as one option. A model that answers none scores "
                    "0 however well it sees the image: the embedded warm start teaches the description, grounding "
                    "and scoring formats, not a letter choice, so the tiny models write no readable choice here "
                    "(a real Qwen2.5-VL answers Q-Bench zero-shot, as in the paper).", ""]
        out += [f"Paper: Refine-IQA-S2 (think) overall {PAPER['table4_overall_s2_think']:.2%}.", ""]
    return out


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _plot_curves(curves: dict[str, list[dict]], key: str, path: Path, title: str, ylabel: str) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {name: [(r["step"], r[key]) for r in c if key in r] for name, c in curves.items()}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, pts in series.items():
        xs, ys = zip(*pts)
        k = max(1, len(ys) // 25)  # moving average keeps noisy RL curves readable
        smooth = [sum(ys[max(0, i - k + 1): i + 1]) / len(ys[max(0, i - k + 1): i + 1]) for i in range(len(ys))]
        ax.plot(xs, smooth, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name)
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path.name


def synthetic_mos_label(params: dict) -> str:
    """How the synthetic scoring set's MOS was made, for the report's dataset column and its header."""
    syn = params["data"]["scoring"]["synthetic"]
    fams = f", {' / '.join(syn['families'])} only" if syn.get("families") else ""
    return {"proxy": f"proxy MOS: {syn['metric']}{fams}", "severity": f"severity MOS: 100 - 20 x level{fams}",
            "brightness": "MOS: mean brightness"}[syn["kind"]]


def render_report(params: dict, metrics_path, report_path, figures_dir, cards_dir=None) -> Path:
    m = read_json(metrics_path)
    R = Path(params["paths"]["results"])
    figures_dir = Path(figures_dir)
    report_path = Path(report_path)
    rel = Path(os.path.relpath(figures_dir, report_path.parent))
    curves = {name: read_jsonl(R / "curves" / f"{name}.jsonl") for name in m["curves"]}
    out = [f"# Refine-IQA run report ({m['configuration']} configuration)", ""]
    if m["configuration"] == "embedded":
        out += ["> Embedded configuration: a ~0.4M-parameter Qwen2.5-VL built locally with random weights, a format-only "
                "warm start on RANDOM answers, generated scenes and a SYNTHETIC scoring set "
                f"({synthetic_mos_label(params)}). The numbers show the pipeline works and what RL changed at this "
                "scale; they are not comparable to the paper's, which are printed beside them for reference.", ""]
    out += _blind_margins(m)
    out += _skill_kept_section(m)
    # Data
    d = m["data"]
    qc = d.get("qc", {})
    out += ["## Refine-Perception data", "",
            f"Review mode: **{d.get('review_mode')}**. Items: {qc.get('total')} synthesized, {qc.get('kept')} kept.", "",
            _table(["removed by", "items"], [[rule, str(n)] for rule, n in qc.get("removed_by_rule", {}).items()]
                   + [["human review", str(qc.get("removed_by_review", 0))]]), ""]
    for key, p in sorted(d.get("plots", {}).items()):
        out.append(f"![{key}]({os.path.relpath(p, report_path.parent)})")
    out.append("")
    # Tables 1-2
    fams = list(TABLE_FAMILIES)
    for task, title, pct in (("description", "Table 1: description accuracy (object, distortion and severity all right)", True),
                             ("grounding", "Table 2: grounding IoU", False)):
        out += [f"## {title}", ""]
        for ref, label in (("all", "FR + NR"), ("fr", "full-reference"), ("nr", "no-reference")):
            rows = []
            for name in ("base", "stage1", "stage2-main"):
                t = m["perception"][name][task][ref]
                rows.append([name] + [_fmt(t[f], pct) for f in fams] + [_fmt(t["easy"], pct), _fmt(t["hard"], pct), _fmt(t["overall"], pct)])
            bl = m.get("blind", {}).get("perception", {}).get(task, {}).get(ref)
            if bl is not None:
                rows.append([BLIND_LABEL] + [_fmt(bl[f], pct) for f in fams] + [_fmt(bl["easy"], pct), _fmt(bl["hard"], pct), _fmt(bl["overall"], pct)])
            b, s1 = m["perception"]["base"][task][ref], m["perception"]["stage1"][task][ref]
            rows.append(["advantage (S1 - base)"] + [_fmt((s1[f] - b[f]) if not (math.isnan(s1[f]) or math.isnan(b[f])) else math.nan, pct) for f in fams + ["easy", "hard", "overall"]])
            out += [f"**{label}** (n = {m['perception']['base'][task][ref]['n']})", "",
                    _table(["model"] + [PAPER_COLUMNS[f] for f in fams] + ["Easy", "Hard", "Overall"], rows), ""]
        if task == "description":
            rows = [[n] + [_fmt(m["perception"][n]["description"]["all"][f"{f}_accuracy"], True) for f in ("object", "family", "severity")]
                    for n in ("base", "stage1", "stage2-main")]
            bl = m.get("blind", {}).get("perception", {}).get("description", {}).get("all")
            if bl is not None:
                rows.append([BLIND_LABEL] + [_fmt(bl[f"{f}_accuracy"], True) for f in ("object", "family", "severity")])
            out += ["Per-field accuracy (FR + NR):", "", _table(["model", "object", "distortion", "severity"], rows), ""]
    out += _blind_note(m)
    out += _stage1_answers_section(m)
    out += [f"Paper (Qwen2.5-VL-7B, Refine-Perception-20K-test), overall description accuracy: base {PAPER['table1_overall']['base']:.2%}, "
            f"S1 {PAPER['table1_overall']['stage1']:.2%}, S2 {PAPER['table1_overall']['stage2-main']:.2%}; grounding IoU S1 {PAPER['table2_overall_s1']}.", ""]
    # Table 3 / Stage-2 before-after
    out += ["## Table 3: scoring (SRCC / PLCC, no-think, probability-based score)", ""]
    rows, mos_label = [], synthetic_mos_label(params)
    for name, res in m["scoring"].items():
        for ds, r in res["datasets"].items():
            paper = PAPER["table3"].get(ds)
            rows.append([name, f"synthetic ({mos_label})" if ds == "synthetic" else ds, _fmt(r["no_think"]["prob"]["srcc"]),
                         _fmt(r["no_think"]["prob"]["plcc"]), f"{paper[0]:.3f} / {paper[1]:.3f}" if paper else "-"])
    for ds, b in m.get("blind", {}).get("scoring", {}).items():
        rows.append([BLIND_LABEL + ": a constant score", f"synthetic ({mos_label})" if ds == "synthetic" else ds,
                     "0 (undefined)", "0 (undefined)", "-"])
    for metric, per in m.get("baselines", {}).items():
        for ds, r in per.items():
            rows.append([f"baseline: {metric} (pyiqa)", ds, _fmt(r["srcc"]), _fmt(r["plcc"]), "-"])
    out += [_table(["model", "dataset", "SRCC", "PLCC", "paper SRCC / PLCC"], rows), "",
            "A constant score ranks nothing: its SRCC / PLCC are undefined, counted as 0. Any positive SRCC needs "
            "the image.", ""]
    out += _qbench_section(m)
    out += ["## Stage-2 before / after (think mode, synthetic test set)", ""]
    rows = []
    for name in ("stage1", "stage2-main"):
        for ds, r in m["scoring"][name]["datasets"].items():
            t = r["think"]
            rows.append([name, ds, _fmt(t["prob"]["srcc"]), _fmt(t["numeric"].get("srcc")), _fmt(t["numeric"]["hit_rate"]),
                         _fmt(t["numeric"]["mae_scaled"]), _fmt(t["format_compliance"])])
    for ds, b in m.get("blind", {}).get("scoring", {}).items():
        rows.append([f"{BLIND_LABEL}: {b['hit_score']:.1f} (hit rate), {b['mae_score']:.2f} (MAE)", ds, "0 (undefined)",
                     "0 (undefined)", _fmt(b["hit_rate"]), _fmt(b["mae"]), "-"])
    out += [_table(["model", "dataset", "SRCC (prob)", "SRCC (numeric)", "hit rate |err|<0.5", "MAE", "format"], rows), ""]
    # Tables 5-6
    out += ["## Table 5: ablations (each its own Stage-2 run; think-mode numeric hit rate and SRCC)", ""]
    rows = []
    for name, res in m["scoring"].items():
        if not name.startswith("stage2-"):
            continue
        for ds, r in res["datasets"].items():
            c = m["curves"].get(name, {})
            rows.append([name.removeprefix("stage2-"), ds, _fmt(r["think"]["prob"]["srcc"]), _fmt(r["no_think"]["prob"]["srcc"]),
                         _fmt(r["think"]["numeric"]["hit_rate"]),
                         _fmt(c.get("rewards/answer_reward/mean", {}).get("first20")), _fmt(c.get("rewards/answer_reward/mean", {}).get("last20"))])
    out += [_table(["variant", "dataset", "SRCC think (prob)", "SRCC no-think (prob)", "hit rate think", "answer reward first 20", "answer reward last 20"], rows), ""]
    out += _ablation_gap_section(m.get("ablation_spread", {}), m.get("measured_seed_spread"))
    out += ["## Table 6: numeric vs probability-based inference (SRCC / PLCC)", ""]
    rows = []
    for name, res in m["scoring"].items():
        for ds, r in res["datasets"].items():
            for mode in ("no_think", "think"):
                x = r[mode]
                rows.append([name, ds, mode, f"{_fmt(x['numeric'].get('srcc'))} / {_fmt(x['numeric'].get('plcc'))}",
                             f"{_fmt(x['prob']['srcc'])} / {_fmt(x['prob']['plcc'])}", _fmt(x["numeric"]["parse_rate"])])
    out += [_table(["model", "dataset", "mode", "numeric", "probability", "numeric parse rate"], rows), ""]
    # Figures
    out += ["## Training curves", ""]
    s2 = {k: v for k, v in curves.items() if k.startswith("stage2")}
    figs = [
        (_plot_curves({"stage1": curves["stage1"]}, "reward", figures_dir / "stage1_reward.png", "Stage-1 total reward", "reward"), "Stage-1 reward"),
        (_plot_curves({"stage1": curves["stage1"]}, "rewards/description_reward/mean", figures_dir / "stage1_description.png", "Stage-1 description reward", "reward"), "Stage-1 description reward"),
        (_plot_curves({"stage1": curves["stage1"]}, "rewards/grounding_reward/mean", figures_dir / "stage1_grounding.png", "Stage-1 grounding reward (IoU)", "IoU"), "Stage-1 grounding reward"),
        (_plot_curves(s2, "rewards/answer_reward/mean", figures_dir / "stage2_answer_reward.png", "Stage-2 answer reward (think vs no-think: Figure 5 right)", "answer reward"), "Stage-2 answer reward"),
        (_plot_curves({k: v for k, v in s2.items() if k in ("stage2-main", "stage2-no_pd")}, "think/mean_words", figures_dir / "stage2_think_length.png", "Think length, PD on vs off (Figure 5 left)", "words in think"), "Think length with PD on and off"),
        (_plot_curves(s2, "reward_std", figures_dir / "stage2_reward_std.png", "Stage-2 reward std", "std"), "Reward std"),
        (_plot_curves(s2, "rewards/pd_reward/mean", figures_dir / "stage2_pd_reward.png", "PD reward", "r_pd"), "PD reward"),
        (_plot_curves(s2, "groups/frac_with_correct", figures_dir / "stage2_groups_correct.png", "Groups with a correct rollout", "fraction"), "Fraction of groups with a correct rollout"),
    ]
    for name, caption in figs:
        if name:
            out += [f"**{caption}**", "", f"![{caption}]({rel}/{name})", ""]
    atomic_write_text(report_path, "\n".join(out) + "\n")
    # Evaluation model cards beside the report (model folders are training outputs: never rewritten here).
    from refine_iqa.model_card import workflow_model_dirs, write_evaluation_cards

    write_evaluation_cards(m, workflow_model_dirs(params, list(m["scoring"])),
                           Path(cards_dir) if cards_dir is not None else report_path.parent / "model_cards")
    return report_path
