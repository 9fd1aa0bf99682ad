"""Data sets of the series: downloads, toy data and the real audio-visual sets."""
