"""Keras Tuner's oracles as backends (`kt-random`, `kt-bayesian`, `kt-hyperband`); filled in by its own issue."""

from __future__ import annotations

KT_BACKENDS: dict = {}
