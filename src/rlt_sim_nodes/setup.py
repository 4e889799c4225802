from setuptools import find_packages, setup

package_name = 'rlt_sim_nodes'

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
    description="The simulated cell's ROS 2 nodes: the MuJoCo robot, its episode manager and a simulated operator.",
    license='Apache-2.0',
    extras_require={'test': ['pytest']},
    entry_points={
        'console_scripts': [
            'sim_robot = rlt_sim_nodes.sim_robot:main',
            'episode_manager = rlt_sim_nodes.episode_manager:main',
            'sim_human = rlt_sim_nodes.sim_human:main',
        ],
    },
)
