"""ControlSteps: which joint states of a driver at its own rate are control steps."""

import numpy as np
import pytest

from rlt_core.control.steps import ControlSteps

CONTROL_HZ = 20
PERIOD = 50_000_000  # ns
EPOCH = 1_765_000_000 * 10**9  # a wall-clock stamp, as a driver's


def driver(rate_hz, seconds, phase_ns=0, jitter_ns=0, seed=0):
    """Stamps of a driver at `rate_hz`, each off its nominal time by up to `jitter_ns` either way."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate_hz)
    nominal = EPOCH + phase_ns + np.round(np.arange(n) * 1e9 / rate_hz).astype(np.int64)
    return [int(s) for s in nominal + rng.integers(-jitter_ns, jitter_ns + 1, n)]


def steps_of(stamps, control_hz=CONTROL_HZ):
    steps = ControlSteps(control_hz)
    return [i for i, s in enumerate(stamps) if steps.admit(s)]


@pytest.mark.parametrize('phase_ms', [0, 1, 13, 24, 25, 26, 37, 49])
def test_a_driver_at_the_control_rate_yields_every_joint_state_whatever_its_jitter_and_phase(phase_ms):
    stamps = driver(CONTROL_HZ, 30, phase_ns=phase_ms * 10**6, jitter_ns=20_000_000, seed=phase_ms)
    assert steps_of(stamps) == list(range(len(stamps)))


@pytest.mark.parametrize('phase_ms', [0, 24, 49])
def test_a_late_joint_state_followed_by_a_punctual_one_are_two_steps(phase_ms):
    """A timer-driven publisher (as the simulator's) stamps when its callback runs: late by up to nearly a
    period, the next one on time."""
    rng = np.random.default_rng(phase_ms)
    late = rng.choice([0, 0, 0, 10_000_000, 30_000_000, 45_000_000, 49_000_000], 600)
    stamps = [EPOCH + phase_ms * 10**6 + k * PERIOD + int(delay) for k, delay in enumerate(late)]
    assert steps_of(stamps) == list(range(len(stamps)))


@pytest.mark.parametrize('rate_hz, every', [(100, 5), (200, 10), (500, 25)])
@pytest.mark.parametrize('phase_ms', [0, 3, 25, 48])
def test_a_faster_driver_yields_one_step_per_control_period(rate_hz, every, phase_ms):
    stamps = driver(rate_hz, 20, phase_ns=phase_ms * 10**6, seed=rate_hz + phase_ms)
    steps = steps_of(stamps)
    assert set(np.diff(steps[2:])) == {every}  # the first serves the line before its own: the second is close
    assert abs(len(steps) - 20 * CONTROL_HZ) <= 2


@pytest.mark.parametrize('rate_hz, every', [(100, 5), (500, 25)])
def test_jitter_across_the_half_period_moves_a_step_by_one_joint_state_not_the_rate(rate_hz, every):
    """Joint states stamped around half a period before a line (jitter either way): the step is the one just
    before or just after, one per period all the same."""
    stamps = driver(rate_hz, 20, phase_ns=25_000_000, jitter_ns=200_000, seed=rate_hz)
    steps = steps_of(stamps)
    gaps = np.diff(steps[2:])
    assert set(gaps) <= {every - 1, every, every + 1} and abs(gaps.mean() - every) < 0.01
    assert abs(len(steps) - 20 * CONTROL_HZ) <= 2


@pytest.mark.parametrize('phase_ms', [0, 7, 19])
def test_at_two_and_a_half_times_the_control_rate_steps_alternate_every_2nd_and_3rd(phase_ms):
    stamps = driver(50, 20, phase_ns=phase_ms * 10**6, jitter_ns=500_000, seed=phase_ms)
    steps = steps_of(stamps)
    gaps = np.diff(steps[4:])  # from the current line on
    assert set(gaps) == {2, 3} and abs(gaps.mean() - 2.5) < 0.01
    assert np.diff(np.array(stamps)[steps[4:]]).min() >= PERIOD - 20_000_000 - 1_000_000  # a period - a driver interval
    assert abs(len(steps) - 20 * CONTROL_HZ) <= 2


@pytest.mark.parametrize('rate_hz', [20, 50, 100, 500])
def test_a_node_that_lost_joint_states_agrees_with_one_that_did_not_from_the_next_line(rate_hz):
    """Each lost joint state that was a step is replaced by the next one received; every other step is the same."""
    stamps = driver(rate_hz, 20, phase_ns=11_000_000, jitter_ns=1_000_000, seed=rate_hz)
    lost = {i for i in np.random.default_rng(rate_hz).choice(len(stamps), len(stamps) // 10) if i % 2}  # not 2 in a row
    everything = set(steps_of(stamps))
    received = [i for i in range(len(stamps)) if i not in lost]
    with_losses = {received[i] for i in steps_of([stamps[i] for i in received])}
    assert everything & set(received) <= with_losses  # what both saw as steps stays a step
    for i in with_losses - everything:  # the others each stand for a step the node lost, just before
        before = max(j for j in everything if j < i)
        assert before in lost and all(j in lost for j in range(before, i))


@pytest.mark.parametrize('rate_hz', [20, 50, 100, 500])
def test_a_node_that_starts_later_agrees_once_it_reaches_the_current_line(rate_hz):
    stamps = driver(rate_hz, 5, phase_ns=17_000_000, jitter_ns=1_000_000, seed=3)
    everything = steps_of(stamps)
    for start in (1, 7, len(stamps) // 3):
        later = [start + i for i in steps_of(stamps[start:])]
        assert later[4:] == [i for i in everything if i >= later[4]]
        duration_s = (stamps[later[4]] - stamps[start]) * 1e-9
        assert len(later[:4]) <= duration_s * CONTROL_HZ + 3  # at most two more than the periods passed


def test_duplicate_and_out_of_order_stamps_are_never_steps():
    steps = ControlSteps(CONTROL_HZ)
    assert steps.admit(EPOCH)
    assert not steps.admit(EPOCH)  # the same stamp again
    assert not steps.admit(EPOCH - PERIOD)  # older
    assert steps.admit(EPOCH + PERIOD)
    assert not steps.admit(EPOCH + PERIOD // 2)  # arrived after a newer step
    assert steps.admit(EPOCH + 2 * PERIOD)


@pytest.mark.parametrize('rate_hz', [50, 100, 500])
def test_after_a_pause_steps_resume_on_the_grid_without_catching_up(rate_hz):
    second = driver(rate_hz, 1, phase_ns=2_000_000)
    stamps = second + [s + 3 * 10**9 for s in second]
    steps = steps_of(stamps)
    after = [i for i in steps if i >= len(second)]
    assert after[0] == len(second)  # the first joint state after the pause
    assert CONTROL_HZ - 1 <= len(after) <= CONTROL_HZ + 2
    n = len(second)
    assert after[4:] == [i + n for i in steps if i < n and i + n >= after[4]]  # the grid before the pause


def test_the_control_rate_must_be_positive():
    with pytest.raises(ValueError):
        ControlSteps(0)
