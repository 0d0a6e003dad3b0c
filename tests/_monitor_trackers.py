"""Trackers for the monitor's tests and benchmark, built from the real models so that
every record has the shape orchestree writes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from orchestree.models import Agent, Lane, Tracker

NOW = "2026-01-01T12:00:00.000Z"


def lane(**fields: Any) -> dict[str, Any]:
    return Lane(**fields).model_dump(mode="json")


def agent(lane_id: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "worktree": f".worktrees/agent-{lane_id}",
        "lane": lane_id,
        "branch": f"lane-{lane_id}",
        "log": f".orchestration/logs/agent-{lane_id}.log",
    }
    return Agent(**{**base, **fields}).model_dump(mode="json")


def tracker(
    lanes: dict[str, dict[str, Any]] | None = None,
    agents: dict[str, dict[str, Any]] | None = None,
    **top: Any,
) -> dict[str, Any]:
    base: dict[str, Any] = {
        "repo": "/srv/demo",
        "base_branch": "main",
        "base_commit": "0" * 40,
        "created_at": "2026-01-01T11:00:00.000Z",
        "updated_at": NOW,
    }
    data = Tracker(**{**base, **top}).model_dump(mode="json")
    data["lanes"] = lanes or {}
    data["agents"] = agents or {}
    return data


def write(path: Path, data: dict[str, Any]) -> None:
    """Replace the tracker atomically, as orchestree's writer does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def big_tracker(n: int, running_pid: int | None = None) -> dict[str, Any]:
    """A run of `n` lanes in every state, as the benchmark and the layout tests use."""
    statuses = ["running", "completed", "merged", "pending", "failed", "blocked", "conflict"]
    lanes: dict[str, dict[str, Any]] = {}
    agents: dict[str, dict[str, Any]] = {}
    for i in range(n):
        lane_id = f"lane-{i:04d}"
        status = statuses[i % len(statuses)]
        started = None if status in ("pending", "blocked") else "2026-01-01T11:10:00.000Z"
        finished = None if status in ("pending", "blocked", "running") else NOW
        lanes[lane_id] = lane(
            name=f"Work item {i}",
            status=status,
            tasks=[f"Do task {i}", "Write the report"],
            results=[f"docs/_generated/{lane_id}/report.md"],
            priority=("high", "medium", "low")[i % 3],
            attempts=1 if started else 0,
            max_attempts=2,
            progress=f"{(i * 7) % 100}% complete" if status == "running" else None,
            started_at=started,
            finished_at=finished,
            cost_usd=0.01 * (i % 50) if finished else None,
            error="dependency lane-0004 failed" if status == "blocked" else None,
            merge={"status": "conflict", "conflicts": ["src/app.py"]}
            if status == "conflict"
            else {},
        )
        if started:
            agent_status = {"running": "running", "failed": "failed"}.get(status, "completed")
            agents[f"agent-{lane_id}"] = agent(
                lane_id, status=agent_status, pid=running_pid, started_at=started
            )
    return tracker(lanes, agents, phase=3, status="running")
