import pytest

from dainet.training.schedule import scaled_lr, step_lr, total_iterations, warmup_factor


def test_scaled_lr_reference_rule():
    assert scaled_lr(5e-4, 4, 1) == pytest.approx(5e-4)          # reference batch: unchanged
    assert scaled_lr(5e-4, 4, 2) == pytest.approx(5e-4 * 1.4142)  # rounded to 4 places
    assert scaled_lr(5e-4, 1, 1) == pytest.approx(2.5e-4)
    assert scaled_lr(1.0, 2, 1) == pytest.approx(0.7071)


def test_step_lr_boundaries():
    steps = [20000, 25000, 30000]
    assert step_lr(1.0, 0, steps, 0.1) == 1.0
    assert step_lr(1.0, 19999, steps, 0.1) == 1.0
    assert step_lr(1.0, 20000, steps, 0.1) == pytest.approx(0.1)
    assert step_lr(1.0, 29999, steps, 0.1) == pytest.approx(0.01)
    assert step_lr(1.0, 10 ** 6, steps, 0.1) == pytest.approx(0.001)


def test_total_iterations_takes_the_first_limit():
    assert total_iterations(150000, 100, 3222) == 150000
    assert total_iterations(150000, 100, 75) == 7500


def test_warmup_is_linear_then_flat_and_off_at_zero():
    assert [warmup_factor(i, 4) for i in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0 and warmup_factor(0, -1) == 1.0


def test_cosine_runs_from_lr_to_the_final_fraction():
    from dainet.training.schedule import cosine_lr, scheduled_lr
    assert cosine_lr(0.1, 0, 100) == pytest.approx(0.1)
    assert cosine_lr(0.1, 50, 100) == pytest.approx(0.05)
    assert cosine_lr(0.1, 100, 100, 0.01) == pytest.approx(0.001)
    lrs = [cosine_lr(0.1, i, 100) for i in range(101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    # warm-up multiplies either schedule; step ignores total
    assert scheduled_lr("cosine", 0.1, 4, 100, [], 0.1, 10) == pytest.approx(0.5 * cosine_lr(0.1, 4, 100))
    assert scheduled_lr("step", 0.1, 60, 100, [50], 0.1, 0) == pytest.approx(0.01)
    with pytest.raises(ValueError):
        scheduled_lr("poly", 0.1, 0, 100, [], 0.1, 0)
