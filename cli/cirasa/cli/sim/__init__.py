"""A deterministic simulation of the five services (DESIGN.md section 4): one process, simulated time,
a seeded workload and seeded faults at await points, and the delivery invariants checked after each
schedule. ``cirasa sim --seed S`` replays a schedule exactly."""
