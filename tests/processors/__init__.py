"""Tests of the built-in processors, each against real local services."""
