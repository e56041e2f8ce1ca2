"""decaf_ros: training-free language-guided segmentation (DecAF + SAM2) for ROS 2.

Kept deliberately empty: under colcon the ROS interface generator installs its own
``decaf_ros/__init__.py`` next to the generated ``decaf_ros.msg`` package, and the
two must be interchangeable.
"""
