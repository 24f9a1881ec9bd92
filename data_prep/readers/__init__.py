"""Readers for raw IMU / force exports: Xsens MT Manager text, C3D (ezc3d), MATLAB tables and HDF5.

Each reader returns plain numpy / pandas objects and raises a clear error (naming the file and
the missing field or the expected layout) on bad input.
"""
