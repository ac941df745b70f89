"""ACC, BWT and forgetting on accuracy matrices computed by hand."""
import pytest

from geodesic.continual.metrics import (average_accuracy, backward_transfer, forgetting,
                                        forgetting_per_task, summary)

# R[i][j]: accuracy on task j after learning task i
R = [[0.9, 0.1, 0.2],
     [0.6, 0.8, 0.3],
     [0.7, 0.5, 0.95]]


def test_average_accuracy_is_the_mean_of_the_last_row():
    assert average_accuracy(R) == pytest.approx((0.7 + 0.5 + 0.95) / 3)


def test_backward_transfer_compares_the_end_with_just_after_learning():
    # task 0: 0.7 - 0.9 = -0.2; task 1: 0.5 - 0.8 = -0.3
    assert backward_transfer(R) == pytest.approx(-0.25)


def test_forgetting_takes_the_best_accuracy_after_learning():
    # task 0: max(0.9, 0.6) - 0.7 = 0.2; task 1: max(0.8) - 0.5 = 0.3
    assert forgetting_per_task(R) == pytest.approx([0.2, 0.3])
    assert forgetting(R) == pytest.approx(0.25)


def test_forgetting_differs_from_bwt_when_a_task_improves_then_drops():
    r = [[0.5, 0.0, 0.0],
         [0.9, 0.8, 0.0],
         [0.6, 0.8, 1.0]]
    assert backward_transfer(r) == pytest.approx(((0.6 - 0.5) + (0.8 - 0.8)) / 2)
    assert forgetting_per_task(r) == pytest.approx([0.3, 0.0])
    # accuracy before a task is learned does not count: row 0 of task 1 is not its best
    r_before = [[0.5, 0.9, 0.0], [0.9, 0.8, 0.0], [0.6, 0.8, 1.0]]
    assert forgetting_per_task(r_before) == pytest.approx([0.3, 0.0])


def test_single_task_has_nothing_to_forget():
    assert summary([[0.75]]) == {"acc": 0.75, "bwt": 0.0, "forgetting": 0.0,
                                 "forgetting_per_task": [], "matrix": [[0.75]]}


def test_summary_collects_the_scores():
    s = summary(R)
    assert (s["acc"], s["bwt"], s["forgetting"]) == pytest.approx((0.7166666, -0.25, 0.25))
    assert s["matrix"] == [list(row) for row in R]


@pytest.mark.parametrize("bad", [[], [[0.1, 0.2]], [[0.1, 0.2], [0.3]]])
def test_a_matrix_that_is_not_square_is_refused(bad):
    with pytest.raises(ValueError, match="square"):
        average_accuracy(bad)
