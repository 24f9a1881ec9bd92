"""Raw data -> TFDS records (ArrayRecord). One builder per data set; see docs/data_formats.md."""

import importlib

# name -> "module:Class"; imported lazily so that `import data_prep` stays cheap.
BUILDERS = {
    'synthetic_movi': 'data_prep.synthetic_builders:SyntheticMovi',
    'synthetic_running_valr': 'data_prep.synthetic_builders:SyntheticRunningValr',
    'synthetic_walking_grf': 'data_prep.synthetic_builders:SyntheticWalkingGrf',
    'synthetic_walking_kfm': 'data_prep.synthetic_builders:SyntheticWalkingKfm',
    'movi_imu': 'data_prep.movi_imu:MoviImu',
    'camargo2021': 'data_prep.camargo2021:Camargo2021',
    'knee_moment': 'data_prep.knee_moment:KneeMoment',
    'running_valr': 'data_prep.running_valr:RunningValr',
    'ipol_gait': 'data_prep.ipol_gait:IpolGait',
    'lab_files': 'data_prep.lab_files:LabFiles',
}


def get_builder_class(name: str):
  """The builder class registered under ``name``; a clear error lists the known names."""
  if name not in BUILDERS:
    raise KeyError(f'unknown dataset {name!r}; known: {sorted(BUILDERS)}')
  module, cls = BUILDERS[name].split(':')
  try:
    mod = importlib.import_module(module)
  except ModuleNotFoundError as e:
    raise NotImplementedError(f'dataset {name!r}: builder module {module} is not yet available '
                              f'({e})') from e
  return getattr(mod, cls)
