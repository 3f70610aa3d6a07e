"""Leaderboards: published tables, ranking of stored results."""

# The leaderboard tracks: a track is a suite whose runs become ranked entries.
TRACKS = ("open_medical", "flowertune_medical")
