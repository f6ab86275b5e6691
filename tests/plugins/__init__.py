"""Tests of the analysis plugins."""
