from rlt_nodes.keyboard_teleop import DEADMAN, MAPPING, key_to_joy


def test_movement_keys_hold_the_deadman_and_deflect_one_axis():
    axes, buttons = key_to_joy('w', speed=0.5)
    assert buttons[DEADMAN] == 1 and axes[1] == 0.5 and sum(abs(a) for a in axes) == 0.5
    axes, buttons = key_to_joy('f', speed=2.0)
    assert axes[4] == -1.0 and buttons[DEADMAN] == 1


def test_label_phase_and_stop_keys():
    assert key_to_joy('1')[1][MAPPING.success_button] == 1 and key_to_joy('1')[1][DEADMAN] == 0
    assert key_to_joy('0')[1][MAPPING.failure_button] == 1
    assert key_to_joy('p')[1][MAPPING.phase_button] == 1
    assert key_to_joy('x')[1][MAPPING.estop_button] == 1 and key_to_joy('x')[1][DEADMAN] == 0
    assert key_to_joy('z')[1][MAPPING.estop_reset_button] == 1
    axes, buttons = key_to_joy(' ')
    assert not any(axes) and not any(buttons)
    assert key_to_joy('k') is None
