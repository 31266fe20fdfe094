"""Sample model IR in MoIR's input contract, for the main job and tests."""
