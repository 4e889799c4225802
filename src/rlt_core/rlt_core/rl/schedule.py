"""When the asynchronous learner may update: the update-to-data ratio as a budget."""


def updates_allowed(num_updates: int, learning_transitions: int, buffered: int, utd_ratio: float,
                    min_transitions: int) -> int:
    """How many more updates keep num_updates <= utd_ratio * learning_transitions.

    `learning_transitions` counts the transitions that earn updates (those recorded after the
    warmup episodes, as in the in-process loop); `buffered` all those in the replay. No update
    before `buffered` reaches `min_transitions` (at least 1).
    """
    if buffered < max(1, min_transitions):
        return 0
    return max(0, int(utd_ratio * learning_transitions) - num_updates)
