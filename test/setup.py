from setuptools import setup

package_name = 'rlt_system_tests'

# A test-only package: it installs nothing but its marker, and `colcon test` runs its tests.
setup(
    name=package_name,
    version='0.1.0',
    packages=[],
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='rlt maintainers',
    maintainer_email='rlt@example.org',
    description='Workspace-level multi-process tests of rlt.',
    license='Apache-2.0',
    extras_require={'test': ['pytest']},
)
