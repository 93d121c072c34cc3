"""What a partition (or the whole cluster) has free now, from slurmrestd's node and job lists."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cirasa.backends.slurm.status import base_state, int_or

# node states whose CPUs can be given to jobs, and flags that take a node out of service
_USABLE_NODE_STATES = frozenset({"IDLE", "MIXED", "ALLOCATED", "COMPLETING"})
_NODE_OUT_FLAGS = frozenset(
    {"DRAIN", "DRAINED", "DRAINING", "FAIL", "NOT_RESPONDING", "MAINTENANCE", "POWERED_DOWN", "POWER_DOWN"}
)


@dataclass(frozen=True)
class SlurmCapacity:
    """What a partition (or the whole cluster) has now, for the planner's calendar."""

    nodes: int
    nodes_unavailable: int
    total_cores: int
    free_cores: int
    total_memory_mb: int
    free_memory_mb: int
    max_free_cores_per_node: int
    max_free_memory_mb_per_node: int
    running_jobs: int
    running_cores: int
    pending_jobs: int
    pending_cores: int


def capacity_of(nodes: list[Any], jobs: list[dict[str, Any]], partition: str | None) -> SlurmCapacity:
    """Free resources and the queue of ``partition`` (all partitions when None); nodes drained, down or
    not responding count as unavailable. v0.0.36 nodes carry no allocation or partitions: all count,
    all free."""
    usable = unavailable = 0
    total_cores = free_cores = total_mem = free_mem = max_cores = max_mem = 0
    for node in nodes:
        if not isinstance(node, dict):
            continue
        partitions = node.get("partitions")
        if partition and isinstance(partitions, list) and partition not in partitions:
            continue
        if not _node_usable(node):
            unavailable += 1
            continue
        usable += 1
        cpus = int_or(node.get("cpus"))
        idle = int_or(node.get("idle_cpus"), cpus - int_or(node.get("alloc_cpus")))
        mem = int_or(node.get("real_memory"))
        mem_free = max(0, mem - int_or(node.get("alloc_memory")))
        total_cores += cpus
        free_cores += idle
        total_mem += mem
        free_mem += mem_free
        max_cores = max(max_cores, idle)
        max_mem = max(max_mem, mem_free)
    running = running_cores = pending = pending_cores = 0
    for job in jobs:
        if partition and job.get("partition") != partition:
            continue
        state = base_state(job.get("job_state"))
        if state in ("RUNNING", "COMPLETING", "SUSPENDED"):
            running += 1
            running_cores += int_or(job.get("cpus"))
        elif state in ("PENDING", "CONFIGURING", "REQUEUED"):
            pending += 1
            pending_cores += max(1, int_or(job.get("cpus")))
    return SlurmCapacity(
        nodes=usable,
        nodes_unavailable=unavailable,
        total_cores=total_cores,
        free_cores=free_cores,
        total_memory_mb=total_mem,
        free_memory_mb=free_mem,
        max_free_cores_per_node=max_cores,
        max_free_memory_mb_per_node=max_mem,
        running_jobs=running,
        running_cores=running_cores,
        pending_jobs=pending,
        pending_cores=pending_cores,
    )


def _node_usable(node: Mapping[str, Any]) -> bool:
    states = {s.upper() for s in str(node.get("state", "")).replace("+", " ").split()}
    flags = {str(f).upper() for f in node.get("state_flags") or []}
    return bool(states & _USABLE_NODE_STATES) and not (states | flags) & _NODE_OUT_FLAGS
