"""HEAR evaluation: task folders, embedding cache, probes, scores, results and leaderboards."""
