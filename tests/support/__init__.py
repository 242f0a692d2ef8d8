"""Helpers the test layers share (imported as ``support.<module>``; tests/ is on sys.path through conftest.py)."""
