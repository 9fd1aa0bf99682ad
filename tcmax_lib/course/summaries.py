"""The README's tables that are derived from stored records rather than recorded as `summary_` keys (notebook 00).

    ci_table(records, col)          -> {method: {data set: 'mean ± half-width'}}, 95 % t over the seeds
    DERIVED_SUMMARIES[notebook]     -> the tables of that notebook, from its committed metrics

Notebook 07: fused accuracy, JS and entropy ratio per method and data set; TCMax minus every baseline read as
one family (Holm over all of them, TOST at ±0.02) with the sentence its counts support; the powered comparison.
Notebook 05: its powered comparison. Everything comes from `results/`, read through `records.check_record`.
"""

from __future__ import annotations

from typing import Any

MARGIN = 0.02       # the equivalence margin of notebooks 04, 05 and 07: 2 accuracy points


def ci_table(records: dict, col: str, digits: int = 3) -> dict:
    """{method: {data set: 'mean ± half-width'}}, a 95 % t-interval over the recorded seeds of one metric (nb 07)."""
    from ..stats import mean_ci

    def cell(values: list[float]) -> str:
        iv = mean_ci(values)
        return f"{iv.mean:.{digits}f} ± {iv.half_width:.{digits}f}"

    methods = list(next(iter(records.values()))["per_seed"])
    return {m: {d: cell(r["per_seed"][m][col]) for d, r in records.items()} for m in methods}


def headline(records: dict, subject: str = "tcmax", col: str = "acc") -> tuple[dict, str]:
    """({baseline: {data set: reading}}, sentence): `subject` minus every baseline on every data set (nb 07)."""
    from .. import readings as rd

    pairs = {(d, b): (r["per_seed"][subject][col], r["per_seed"][b][col])
             for d, r in records.items() for b in r["per_seed"] if b != subject}
    reads = rd.read_family(pairs, MARGIN)
    table = {b: {d: reads[(d, b)].short() for d in records} for b in dict.fromkeys(b for _, b in pairs)}
    return table, rd.headline(reads, "TCMax", f"{len(table)} baselines on {len(records)} data sets")


def powered_table(p: dict, cols: dict[str, str]) -> dict:
    """{'tcmax - b': {column: 'reading; detectable d'}} of a powered record (notebooks 05, 07)."""
    from ..records import powered_readings

    out: dict[str, dict[str, str]] = {}
    for col, name in cols.items():
        for b, (r, can, _) in powered_readings(p, col).items():
            out.setdefault(f"tcmax - {b}", {})[name] = f"{r.short()}; detects {can:.3f}"
    return out


def powered_seeds(p: dict) -> str:
    """'9 paired seeds', or each comparison's own count ('paired seeds: joint 33, unimodal 14') (nb 05, 07)."""
    from ..records import powered_pairs

    n = {b: len(s["seeds"]) for b, s in powered_pairs(p).items()}
    if len(set(n.values())) == 1:
        return f"{next(iter(n.values()))} paired seeds"
    return "paired seeds per comparison: " + ", ".join(f"{b} {k}" for b, k in n.items())


def _summary_07(metrics: dict) -> dict[str, Any]:
    """README tables of notebook 07 from its per-seed records (mean ± 95 % t); none for pre-protocol runs."""
    if "protocol" not in metrics:          # AdamW, one rate, means only: not shown as if it followed the protocol
        return {}
    n = len(next(iter(metrics["main"].values()))["seeds"])
    out: dict[str, Any] = {title.format(n=n): ci_table(metrics["main"], col) for col, title in (
        ("acc", "summary_fused test accuracy, mean ± 95 % t-interval over {n} paired seeds"),
        ("js", "summary_JS divergence of the unimodal predictions (nats), mean ± 95 % t-interval over {n} seeds"),
        ("entropy_ratio", "summary_entropy ratio max(Ha, Hv) / min(Ha, Hv), mean ± 95 % t-interval over {n} seeds"))}
    table, sentence = headline(metrics["main"])
    out["summary_TCMax minus each baseline, fused accuracy: one family (Holm over all), equivalent = within ±0.02 "
        "by TOST"] = table
    out["summary_the headline"] = sentence
    if "powered" in metrics:
        p = metrics["powered"]
        out[f"summary_AV digits (hard), the powered comparison: {powered_seeds(p)}, each reading "
            "with the difference these seeds detect (80 % power, Holm's strictest level)"] = powered_table(
            p, {"acc": "fused", "acc_audio_head": "speech head", "probe_audio": "speech probe"})
    return out


def _summary_05(metrics: dict) -> dict[str, Any]:
    """README table of notebook 05's powered comparison, when its record has one."""
    if "powered" not in metrics:
        return {}
    p = metrics["powered"]
    return {f"summary_the powered comparison: {powered_seeds(p)}, each reading with the difference "
            "these seeds detect (80 % power, Holm's strictest level)": powered_table(
                p, {"acc": "fused", "acc_audio_head": "speech head", "probe_audio": "speech probe"})}


DERIVED_SUMMARIES = {"07_paper_figures": _summary_07, "05_av_digits": _summary_05}
