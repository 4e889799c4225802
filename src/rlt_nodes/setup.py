from setuptools import find_packages, setup

package_name = 'rlt_nodes'

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
    description='The robot-side rlt ROS 2 nodes: thin wrappers around rlt_core.',
    license='Apache-2.0',
    extras_require={'test': ['pytest']},
    entry_points={
        'console_scripts': [
            'ingestion = rlt_nodes.ingestion:main',
            'vla_server = rlt_nodes.vla_server:main',
            'actor = rlt_nodes.actor:main',
            'arbiter = rlt_nodes.arbiter:main',
            'learner = rlt_nodes.learner:main',
            'keyboard_teleop = rlt_nodes.keyboard_teleop:main',
            'recorder = rlt_nodes.recorder:main',
        ],
    },
)
