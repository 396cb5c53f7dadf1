"""Continual-learning metrics over an accuracy matrix.

`matrix[t][j]` is the test accuracy on task j+1 after training task t+1 (0-based indices), a
fraction in [0, 1]; entries with j > t (tasks not yet seen) are None.
"""

AccuracyMatrix = list[list[float | None]]


def average_accuracy(matrix: AccuracyMatrix) -> float:
    """Mean accuracy over all tasks after the last one was trained (the mean of the last row)."""
    last = matrix[-1]
    return sum(last) / len(last)


def average_forgetting(matrix: AccuracyMatrix) -> float:
    """Mean over every task but the last of (its best accuracy before the end) - (its final accuracy).

    Positive means forgotten; 0.0 for a single task, where nothing can be forgotten.
    """
    final_row = len(matrix) - 1
    drops = [
        max(matrix[t][j] for t in range(j, final_row)) - matrix[final_row][j] for j in range(final_row)
    ]
    return sum(drops) / len(drops) if drops else 0.0
