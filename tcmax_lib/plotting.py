"""One house plotting style, a deterministic `savefig`, and every plot the series reuses (notebooks 00-06)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .runtime import STATE, repo_root

# one palette for the whole series: methods and modalities keep their colour in every chapter
COLORS = {
    "joint": "#4C72B0",
    "unimodal": "#55A868",
    "ogm_ge": "#C44E52",
    "tcmax": "#8172B2",
    "agm": "#DA8BC3",
    "mla": "#8C8C8C",
    "mmpareto": "#CCB974",
    "pmr": "#64B5CD",
    "audio": "#DD8452",
    "visual": "#4C72B0",
    "fused": "#333333",
    "truth": "black",
    "dv": "#4C72B0",
    "mine": "#8172B2",
    "nwj": "#DD8452",
    "infonce": "#55A868",
    "smile": "#C44E52",
    "js": "#937860",
}


def set_style() -> None:
    """Apply the series' plotting style (seaborn whitegrid, readable sizes) (notebook 00)."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", palette="deep")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "figure.figsize": (6.4, 4.0),
                         "axes.spines.top": False, "axes.spines.right": False,
                         "svg.hashsalt": "tcmax"})


def figures_dir() -> Path:
    """Where figures go: env TCMAX_FIGURES_DIR, else figures/ in FULL mode, build/figures in FAST (notebook 00)."""
    env = os.environ.get("TCMAX_FIGURES_DIR")
    if env:
        return Path(env)
    root = repo_root()
    return root / "figures" if STATE.fast is False else root / "build" / "figures"


def savefig(fig: plt.Figure, name: str, pdf: bool = True) -> Path:
    """Save `fig` as PNG (and PDF) with deterministic metadata; return the PNG path (notebook 01).

    `name` is a file name in the figures folder (letters, digits, '_', '-', '.'; no folder, no '..').
    """
    stem = Path(str(name)).stem
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*", stem) or ".." in stem or Path(str(name)).name != str(name):
        raise ValueError(f"savefig(fig, {name!r}): give a file name such as '05_data', with no folder and no '..'.")
    folder = figures_dir()
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / f"{stem}.png"
    fig.savefig(png, bbox_inches="tight", metadata={"Software": None})
    if pdf:
        fig.savefig(folder / f"{stem}.pdf", bbox_inches="tight",
                    metadata={"Creator": None, "Producer": None, "CreationDate": None})
    return png


def ewm(values: Sequence[float], span: int = 200) -> np.ndarray:
    """Exponentially weighted moving average (pandas' adjust=True EWM), for smoothing traces (notebook 01)."""
    return pd.Series(np.asarray(values, dtype=float)).ewm(span=span).mean().to_numpy()


def mean_std_band(ax: plt.Axes, x: np.ndarray, runs: np.ndarray, label: str, color: str | None = None) -> None:
    """Plot the mean of `runs` [n_runs, len(x)] with a +-1 std band (notebook 01)."""
    runs = np.asarray(runs, dtype=float)
    mean, std = runs.mean(0), runs.std(0)
    line, = ax.plot(x, mean, label=label, color=color)
    ax.fill_between(x, mean - std, mean + std, alpha=0.2, color=line.get_color())


def information_venn(ax: plt.Axes, count, title: str = "", names: Sequence[str] = ("a", "v", "y")) -> None:
    """Three entropy circles; region (in_a, in_v, in_y) is hatched `count(in_a, in_v, in_y)` times (0, 1, 2).

    Introduced in notebook 02.
    """
    from matplotlib.patches import Circle

    centres = [(-0.5, 0.35), (0.5, 0.35), (0.0, -0.45)]
    colors = ["salmon", "slateblue", "seagreen"]
    xs, ys = np.meshgrid(np.linspace(-1.5, 1.5, 400), np.linspace(-1.4, 1.3, 400))
    inside = [(xs - cx) ** 2 + (ys - cy) ** 2 < 0.75 ** 2 for cx, cy in centres]
    counts = np.vectorize(count)(*inside).astype(float)
    with plt.rc_context({"hatch.color": "darkorange", "hatch.linewidth": 1.0}):
        ax.contourf(xs, ys, counts, levels=[0.5, 1.5, 2.5], hatches=["////", "xxxx"], colors="none")
    for (cx, cy), col, name in zip(centres, colors, names):
        ax.add_patch(Circle((cx, cy), 0.75, facecolor=col, alpha=0.22, edgecolor=col, lw=1.5))
        ax.text(cx * 1.75, cy * 1.75 + (0.05 if cy > 0 else -0.05), f"H({name})", ha="center", va="center", fontsize=9)
    ax.set_title(title, fontsize=9)
    ax.set_xlim(-1.5, 1.5)
    ax.set_ylim(-1.4, 1.3)
    ax.set_aspect("equal")
    ax.axis("off")


# ----------------------------------------------------------------------------- training diagnostics
def plot_accuracy_curves(histories: dict[str, pd.DataFrame], names: Sequence[str] = ("audio", "visual"),
                         split: str = "val") -> plt.Figure:
    """One panel per method: fused and per-modality accuracy over epochs (notebook 03)."""
    fig, axes = plt.subplots(1, len(histories), figsize=(3.4 * len(histories), 3.0), sharey=True, squeeze=False)
    for ax, (method, h) in zip(axes[0], histories.items()):
        ax.plot(h["epoch"], h[f"{split}_acc"], color=COLORS["fused"], label="fused")
        for m, name in enumerate(names):
            ax.plot(h["epoch"], h[f"{split}_acc_{m}"], color=COLORS.get(name), label=name)
        ax.set_title(method)
        ax.set_xlabel("epoch")
    axes[0, 0].set_ylabel(f"{split} accuracy")
    axes[0, -1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_ogm_ratio(history: pd.DataFrame, window: tuple[int, int] | None = None) -> plt.Figure:
    """OGM discrepancy ratio per epoch (log scale) with the modulation window shaded (notebook 05)."""
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(history["epoch"], history["ogm_ratio"], color=COLORS["ogm_ge"])
    ax.axhline(1.0, color="grey", ls="--", lw=1)
    if window is not None:
        ax.axvspan(*window, color=COLORS["ogm_ge"], alpha=0.1, label="modulation window")
        ax.legend()
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(r"$\rho$ = score$_0$ / score$_1$")
    fig.tight_layout()
    return fig


def plot_confusion(cm: np.ndarray, labels: Sequence[str], ax: plt.Axes | None = None, title: str = "") -> plt.Axes:
    """Row-normalised confusion matrix as a heat map (notebook 05)."""
    import seaborn as sns

    ax = ax or plt.subplots(figsize=(3.5, 3))[1]
    norm = cm / np.clip(cm.sum(1, keepdims=True), 1, None)
    sns.heatmap(norm, annot=True, fmt=".2f", cmap="Blues", vmin=0, vmax=1, cbar=False,
                xticklabels=labels, yticklabels=labels, ax=ax)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return ax
