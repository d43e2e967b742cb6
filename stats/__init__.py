"""Statistics computed inside the task runtime (TaskExtensions): event-time windows."""

from wirestream.stats.windows import WindowAggregator, WindowStats, configure

__all__ = ["WindowAggregator", "WindowStats", "configure"]
