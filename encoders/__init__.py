"""Encoders of exactverify networks and queries into MILP and SMT models."""
