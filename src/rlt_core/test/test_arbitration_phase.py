import numpy as np
import pytest
import torch

from rlt_core.control.arbitration import arbitrate
from rlt_core.control.phase import CriticalPhase, PhaseConfig, PhaseDetector
from rlt_core.control.safety import ActionLimits, InvalidChunkError
from rlt_core.rl.replay import SOURCE_ACTOR, SOURCE_HUMAN, SOURCE_VLA

LIMITS = ActionLimits.symmetric([1.0, 1.0])
VLA, ACTOR, HUMAN = np.zeros((3, 2)), np.full((3, 2), 0.5), np.full((3, 2), -2.0)


@pytest.mark.parametrize('human, critical, warmup, actor, source', [
    (HUMAN, True, False, ACTOR, SOURCE_HUMAN),     # human beats everything
    (HUMAN, False, True, None, SOURCE_HUMAN),
    (None, True, True, ACTOR, SOURCE_VLA),         # warmup VLA beats the actor
    (None, True, False, ACTOR, SOURCE_ACTOR),      # actor in the critical phase
    (None, False, False, ACTOR, SOURCE_VLA),       # VLA outside it
    (None, True, False, None, SOURCE_VLA),         # no actor weights yet
])
def test_priority(human, critical, warmup, actor, source):
    d = arbitrate(VLA, LIMITS, actor_chunk=actor, human_chunk=human, critical=critical, warmup=warmup)
    assert d.source == source


def test_human_chunk_is_clipped_and_replaces_reference():
    d = arbitrate(VLA, LIMITS, actor_chunk=ACTOR, human_chunk=HUMAN, critical=True)
    np.testing.assert_array_equal(d.executed, np.full((3, 2), -1.0))
    np.testing.assert_array_equal(d.reference, d.executed)
    assert d.clipped


def test_actor_keeps_vla_reference():
    d = arbitrate(VLA, LIMITS, actor_chunk=ACTOR, critical=True)
    np.testing.assert_array_equal(d.reference, VLA)


@pytest.mark.parametrize('source', ['vla', 'actor', 'human'])
def test_the_critical_phase_limits_bind_whoever_drives(source):
    tight = ActionLimits.symmetric([0.2, 1.0])
    chunks = {'vla': {}, 'actor': {'actor_chunk': ACTOR}, 'human': {'human_chunk': HUMAN}}[source]
    vla = np.full((3, 2), 0.7)
    inside = arbitrate(vla, LIMITS, critical=True, critical_limits=tight, **chunks)
    assert np.abs(inside.executed[:, 0]).max() == pytest.approx(0.2)
    assert np.abs(inside.executed[:, 1]).max() <= 1.0
    outside = arbitrate(vla, LIMITS, critical=False, critical_limits=tight, **chunks)
    assert np.abs(outside.executed[:, 0]).max() > 0.2  # outside the critical phase the general limits hold
    with pytest.raises(ValueError):
        arbitrate(vla, LIMITS, critical=True, critical_limits=ActionLimits.symmetric([0.2]))


def test_malformed_chunk_never_passes():
    with pytest.raises(InvalidChunkError):
        arbitrate(VLA, LIMITS, actor_chunk=np.full((3, 2), np.nan), critical=True)


def test_phase_signal_latch_and_human_toggle():
    phase = CriticalPhase(PhaseConfig(latch=True))
    assert not phase.update(signal=False)
    assert phase.update(signal=True) and phase.trigger == 'signal'
    assert phase.update(signal=False)  # latched
    phase.human_toggle()
    assert not phase.active and not phase.update(signal=True)  # the human's word stands
    phase.reset()
    assert not phase.active
    unlatched = CriticalPhase(PhaseConfig(latch=False))
    assert unlatched.update(signal=True) and not unlatched.update(signal=False)


def test_learned_detector_on_tokens():
    torch.manual_seed(0)
    tokens = torch.randn(400, 8)
    labels = (tokens[:, 0] > 0).float()
    detector = PhaseDetector(8)
    assert detector.fit(tokens, labels, steps=300) > 0.95
    phase = CriticalPhase(PhaseConfig(use_signal=False, use_detector=True, latch=False), detector)
    assert phase.update(z_rl=torch.tensor([3.0] + [0.0] * 7))
    assert not phase.update(z_rl=torch.tensor([-3.0] + [0.0] * 7))
    with pytest.raises(ValueError):
        CriticalPhase(PhaseConfig(use_detector=True))


def test_a_critical_zone_holds_the_tool_within_its_radius_and_refuses_a_malformed_one():
    from rlt_core.control.phase import CriticalZone
    zone = CriticalZone((0.1, -0.2, 0.3), radius=0.01)
    assert zone.contains((0.1, -0.2, 0.309)) and not zone.contains((0.1, -0.2, 0.311))
    for center, radius in (((0.1, 0.2), 0.01), ((0.0, float('nan'), 0.0), 0.01), ((0.0, 0.0, 0.0), 0.0)):
        with pytest.raises(ValueError, match='critical zone'):
            CriticalZone(center, radius)
