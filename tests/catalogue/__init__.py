"""The bad-input catalogue (docs/BAD_INPUTS.md): its cases by area, run by test_bad_inputs.py."""
