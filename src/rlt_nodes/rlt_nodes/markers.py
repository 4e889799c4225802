"""RViz markers of the arbiter's decisions: reference and executed chunks, phase and Q, the emergency stop."""

import numpy as np
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

SOURCE_COLORS = {0: (0.2, 0.5, 1.0), 1: (1.0, 0.5, 0.0), 2: (0.1, 0.9, 0.2)}  # VLA blue, actor orange, human green


def _line(ns, points, color, stamp, frame, width=0.001):
    m = Marker(ns=ns, id=0, type=Marker.LINE_STRIP, action=Marker.ADD)
    m.header.stamp, m.header.frame_id = stamp, frame
    m.scale.x = width
    m.color = ColorRGBA(r=color[0], g=color[1], b=color[2], a=1.0)
    m.pose.orientation.w = 1.0
    m.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in points]
    return m


def chunk_markers(start, executed_points, reference, source, text, stamp, frame='base_link') -> MarkerArray:
    """The executed chunk (coloured by source) and the VLA's reference, as gantry-space line strips
    from the command target `start`, and a text with the phase and Q."""
    start = np.asarray(start, np.float64)
    out = MarkerArray()
    out.markers.append(_line('executed', np.vstack([start, executed_points]), SOURCE_COLORS.get(source, (1, 1, 1)),
                             stamp, frame, 0.0015))
    if reference is not None:
        ref_points = start + np.cumsum(np.asarray(reference, np.float64), axis=0)
        out.markers.append(_line('reference', np.vstack([start, ref_points]), (0.6, 0.6, 0.6), stamp, frame))
    label = Marker(ns='phase', id=0, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD, text=text)
    label.header.stamp, label.header.frame_id = stamp, frame
    label.pose.position.x, label.pose.position.y, label.pose.position.z = start[0], start[1], start[2] + 0.03
    label.pose.orientation.w = 1.0
    label.scale.z = 0.008
    label.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
    out.markers.append(label)
    return out


def emergency_stop_markers(reason, hold, stamp, frame='base_link') -> MarkerArray:
    """A red text over the held position while an emergency stop is latched (`reason`); with `reason` None,
    the deletion of that text."""
    label = Marker(ns='emergency_stop', id=0, type=Marker.TEXT_VIEW_FACING,
                   action=Marker.ADD if reason is not None else Marker.DELETE)
    label.header.stamp, label.header.frame_id = stamp, frame
    label.pose.orientation.w = 1.0
    if reason is not None:
        label.text = f'EMERGENCY STOP ({reason}): reset to resume'
        if hold is not None:
            label.pose.position.x, label.pose.position.y = float(hold[0]), float(hold[1])
            label.pose.position.z = float(hold[2]) + 0.05
        label.scale.z = 0.015
        label.color = ColorRGBA(r=1.0, g=0.0, b=0.0, a=1.0)
    return MarkerArray(markers=[label])
