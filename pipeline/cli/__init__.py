"""The `patrol` command line and the runner that wires the stages."""
