"""Physics-based synthetic biomechanics: bodies, motions, dynamics, IMUs (docs/synthetic_data.md).

Modules: ``anthropometry`` (de Leva / Winter body), ``motions`` (gait and MoVi-style activity
plans), ``kinematics`` (IK / FK / CoM solve), ``dynamics`` (ground reaction forces, CoM),
``sensors`` (IMU placement and errors), ``generate`` (trials, labels, per-subject jobs).
"""
