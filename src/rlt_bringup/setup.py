from glob import glob

from setuptools import find_packages, setup

package_name = 'rlt_bringup'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml')),
        ('share/' + package_name + '/config/profiles', glob('config/profiles/*.yaml')),
        ('share/' + package_name + '/description', glob('description/*.urdf')),
        ('share/' + package_name + '/rviz', glob('rviz/*.rviz')),
        # Each cell's committed models, models/<profile>/{vla,rl_token} (SmallVLA.save / RLTokenModel.save).
        *[('share/' + package_name + '/' + folder, glob(folder + '/*')) for folder in sorted(glob('models/*/*'))],
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='rlt maintainers',
    maintainer_email='rlt@example.org',
    description='Launch files, parameters, RViz config and the embedded runner of the rlt graph.',
    license='Apache-2.0',
    extras_require={'test': ['pytest']},
    entry_points={
        'console_scripts': [
            'embedded = rlt_bringup.embedded:main',
            'benchmark_latency = rlt_bringup.benchmark_latency:main',
            'benchmark_reliability = rlt_bringup.benchmark_reliability:main',
            'benchmark_start_stop = rlt_bringup.benchmark_start_stop:main',
        ],
    },
)
