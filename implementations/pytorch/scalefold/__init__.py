"""ScaleFold: an MLPerf HPC OpenFold (AlphaFold2 training) benchmark package."""

__version__ = "0.1.0"
