"""Raw data -> TFDS records (ArrayRecord). One builder per data set; see docs/data_formats.md."""

import importlib

# name -> "module:Class"; imported lazily so that `import data_prep` stays cheap.
BUILDERS = {
    'synthetic_movi': 'data_prep.builders.synthetic:SyntheticMovi',
    'synthetic_running_valr': 'data_prep.builders.synthetic:SyntheticRunningValr',
    'synthetic_walking_grf': 'data_prep.builders.synthetic:SyntheticWalkingGrf',
    'synthetic_walking_kfm': 'data_prep.builders.synthetic:SyntheticWalkingKfm',
    'movi_imu': 'data_prep.builders.movi_imu:MoviImu',
    'camargo2021': 'data_prep.builders.camargo2021:Camargo2021',
    'knee_moment': 'data_prep.builders.knee_moment:KneeMoment',
    'running_valr': 'data_prep.builders.running_valr:RunningValr',
    'ipol_gait': 'data_prep.builders.ipol_gait:IpolGait',
    'lab_files': 'data_prep.builders.lab_files:LabFiles',
    'real_running_grf': 'data_prep.builders.real_running_grf:RealRunningGrf',
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
