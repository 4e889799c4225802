from setuptools import find_packages, setup

package_name = 'rlt_train'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='rlt maintainers',
    maintainer_email='rlt@example.org',
    description='Training entry points of rlt on the simulated cell (no ROS imports).',
    license='Apache-2.0',
    extras_require={'test': ['pytest']},
    entry_points={
        'console_scripts': [
            'train_vla = rlt_train.train_vla:main',
            'train_rl_token = rlt_train.train_rl_token:main',
            'train_rlt = rlt_train.train_rlt:main',
            'rlt_demo_replay = rlt_train.demo_replay:main',
            'rlt_ablations = rlt_train.ablations:main',
            'benchmark_vla = rlt_train.benchmark_vla:main',
            'benchmark_learner = rlt_train.benchmark_learner:main',
            'rlt_readout = rlt_train.readout:main',
        ],
    },
)
