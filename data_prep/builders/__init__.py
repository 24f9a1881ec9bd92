"""One TFDS builder per data set (records.ImuWindowBuilder subclasses); data_prep.BUILDERS names
them. The synthetic sets' builders are in synthetic.py, their generator in data_prep/synthetic/."""
