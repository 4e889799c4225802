"""The embedded runner: the README's main job, the rlt graph on the simulated cell.

The online-RL node graph is not assembled yet, so for now this only checks the workspace and
says what is missing.
"""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog='./rlt run', description=__doc__)
    parser.add_argument('--episodes', type=int, default=300, help='online RL episodes to run')
    parser.add_argument('--output', default='runs/latest', help='output folder')
    parser.parse_args(argv)
    print('rlt: the workspace is set up, but the online-RL node graph is not available yet; '
          'nothing was run.', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
