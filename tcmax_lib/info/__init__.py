"""Chapters 01-02 of the course: mutual information and total correlation, and how to estimate them.

`closed_forms` (ground truths: Gaussian MI and TC, discrete tables), `bounds` (DV, MINE, NWJ, InfoNCE,
JS, SMILE, TCNE), `critics` (concat, separable, pairwise-TC, table critics), `training` (estimator
loops, the MI staircase, the optimal-critic table), `critic_families` (what a restricted critic family
can reach, notebook 04) and `precision_check` (bf16 against fp32, notebook 01). Submodules are imported
explicitly: `from tcmax_lib.info import bounds`.
"""
