"""What process isolation guarantees, one module per guarantee: README.md in this directory lists them."""
