"""WIDER FACE and DARK FACE AP under the official WIDER FACE scheme (spec §12).

numpy / scipy only: importable (and testable) without Jittor. The files it reads are
parsed by :mod:`dainet.formats` (ground truth, labels, prediction files).
"""
from dainet.evaluation.common import (APResult, PRCurve, ScoreNormalisationWarning, missing_predictions,
                                      normalize_scores, score_thresholds, voc_ap, write_curve_csv)
from dainet.evaluation.darkface import (evaluate_darkface, read_darkface_labels,
                                        read_darkface_predictions)
from dainet.evaluation.wider import (SETTINGS, WiderGroundTruth, evaluate_wider,
                                     load_wider_ground_truth, read_wider_predictions)

__all__ = [
    "APResult", "PRCurve", "ScoreNormalisationWarning", "missing_predictions",
    "normalize_scores",
    "score_thresholds", "voc_ap", "write_curve_csv",
    "evaluate_darkface", "read_darkface_labels", "read_darkface_predictions",
    "SETTINGS", "WiderGroundTruth", "evaluate_wider", "load_wider_ground_truth",
    "read_wider_predictions",
]
