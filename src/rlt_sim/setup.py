from setuptools import find_packages, setup

package_name = 'rlt_sim'

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
    description='MuJoCo peg-in-hole cell, scripted expert and demonstration recording (no ROS imports).',
    license='Apache-2.0',
    extras_require={'test': ['pytest']},
    entry_points={
        'console_scripts': [
            'rlt_sim_benchmark = rlt_sim.benchmark:main',
            'rlt_record_demos = rlt_sim.record:main',
        ],
    },
)
