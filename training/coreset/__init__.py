# SPDX-License-Identifier: GPL-3.0-or-later
"""Coreset selection for the ModRec classifier: FoQuS (Lu et al., arXiv 2509.08300) and three baselines.

One full-data training run records every training frame's prediction trajectory (trajectories.py);
scores computed from them (scores.py) pick a small coreset (sampling.py) on which later classifiers
train in a fraction of the time (experiment.py); report.py and cli.py run and summarise the grid.
The method, where each formula comes from and the results: docs/coreset.md.
"""
from training.coreset.experiment import (ARCHS, CoresetError, arch_config, coreset_name, data_spec, epoch_batches,
                                         evaluate_on_test, fit, load_data, new_classifier, predict, read_coreset,
                                         read_record, record, select_all, train_on)
from training.coreset.report import esn0_table, plot_report, report_tables, summary_table
from training.coreset.sampling import (DEFAULT_TIER_BOUNDS, DEFAULT_TIER_PROPORTIONS, METHODS, apportion,
                                       coreset_size, esn0_strata, random_sample, rank, select, tier_quotas,
                                       tiered_sample, tiers, top_k)
from training.coreset.scores import (DEFAULT_WEIGHTS, all_scores, default_el2n_epochs, el2n_score, foqus_score,
                                     forgetting_rank_score, forgetting_score, minmax, persistent_error_score,
                                     quality_score)
from training.coreset.trajectories import TRAJECTORY_FILE, TrajectoryRecorder, load_trajectories
from training.coreset.cli import main

__all__ = [name for name in dir() if not name.startswith("_")]
