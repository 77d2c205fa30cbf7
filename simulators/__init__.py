"""Simulators of the Axis devices bodycam talks to (body cameras, fixed/PTZ cameras)."""
