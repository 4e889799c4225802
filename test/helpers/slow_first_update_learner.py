"""The learner node, its first update held for FIRST_UPDATE_S seconds (as a first compile holds it).

Prints 'first update started' when that update begins. Used by test_learner_node.py.
"""

import time

from rlt_core.rl.td3 import RLTLearner
from rlt_nodes import learner

FIRST_UPDATE_S = 8.0
_update = RLTLearner.update


def slow_first_update(self, batch):
    if self.num_updates == 0:
        print('first update started', flush=True)
        time.sleep(FIRST_UPDATE_S)
    return _update(self, batch)


RLTLearner.update = slow_first_update

if __name__ == '__main__':
    learner.main()
