"""The merge side (DESIGN.md §8, §13): lanes land on the base branch in order.

merger     the queue: ordered in-memory merges, verify, publish, rework hooks
queue      verify's queue: which merged state is checked next
batch      verified in batches, bisected when a batch fails
verify     runs `[merge] verify` in a scratch worktree
guard      what must never be merged (orchestree's own paths, markers)
publish    moves the base branch, once, with a compare-and-swap
radar      conflicts ahead, among lanes still running
startpoint where a dependent lane starts: its dependencies' heads merged in memory
"""
