"""Classification metrics (scikit-learn, no hub downloads): accuracy, macro-F1, per class, confusion."""

from __future__ import annotations

from typing import Any

import numpy as np


def classification_metrics(
    labels: np.ndarray, predictions: np.ndarray, id2label: dict[int, str]
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision / recall / F1 / support and the confusion matrix."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    ids = sorted(id2label)
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=ids, average=None, zero_division=0
    )
    matrix = confusion_matrix(labels, predictions, labels=ids)
    accuracy = float((labels == predictions).mean()) if len(labels) else 0.0
    return {
        "accuracy": accuracy,
        "f1": float(np.mean(f1)) if len(f1) else 0.0,
        "per_class": {
            id2label[i]: {
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "support": int(support[k]),
            }
            for k, i in enumerate(ids)
        },
        "confusion": matrix.tolist(),
        "labels": [id2label[i] for i in ids],
    }
