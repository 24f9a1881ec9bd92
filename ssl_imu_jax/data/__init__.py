"""Data and input: windowed records to device batches (``input_pipeline``) and subject-wise
splits (``splits``). Raw files become records in the top-level ``data_prep`` package."""
