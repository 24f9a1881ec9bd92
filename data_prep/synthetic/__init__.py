"""Physics-based synthetic biomechanics: bodies, motions, dynamics, IMUs (docs/synthetic_data.md).

Modules: ``anthropometry`` (de Leva / Winter body), ``gait`` (walking and running plans; the
walking specifics in ``walking``), ``activities`` (the other MoVi-style activities and the
ACTIVITIES table), ``motion_paths`` (trajectories and the foot-stance model they share),
``kinematics`` (IK / FK / CoM solve), ``dynamics`` (ground reaction forces, CoM),
``sensors`` (IMU placement and errors), ``generate`` (trials, labels, per-subject jobs).
"""
