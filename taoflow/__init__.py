"""tao-flows engine: pure Python (no Prefect) pieces that build, run and hand off NVIDIA TAO actions."""

__version__ = "0.1.0"
